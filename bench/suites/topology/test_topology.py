"""Three machines as a module topology: made ahead, deployed once as one inventory."""

import pytest

pytestmark = pytest.mark.orbstack(
    inventory={"lb": 1, "web": 2}, deploy="site.py", isolation="module"
)


@pytest.mark.parametrize("n", range(3))
def test_uses_the_topology(orb_inventory, n):
    assert orb_inventory["lb"][0].run(["cat", "/tmp/bench-facts"], check=True).ok
