from _steps import step
from pyinfra.api import OperationError, operation


@operation()
def refuse():
    raise OperationError("refused on purpose")
    yield  # a generator, as every operation


step("1")
refuse(name="refuse")
step("3")
