"""Install a small package with apt (index refreshed at most daily: idempotent)."""

from pyinfra.operations import apt

apt.packages(
    name="Install jq",
    packages=["jq"],
    update=True,
    cache_time=24 * 3600,
    _sudo=True,
)
