from _steps import step
from pyinfra.api import operation


@operation()
def broken():
    yield "true"
    raise RuntimeError("the command generator broke")


step("1")
broken(name="broken")
step("3")
