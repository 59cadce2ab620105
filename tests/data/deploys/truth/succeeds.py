from _steps import step

step("1")
step("2")
step("3")
