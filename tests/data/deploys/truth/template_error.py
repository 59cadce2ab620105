from _steps import step
from pyinfra.operations import files

step("1")
files.template(name="render", src="templates/undefined.j2", dest="/tmp/orb-truth-rendered")
step("3")
