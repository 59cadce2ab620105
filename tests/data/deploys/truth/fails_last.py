from _steps import fail, step

step("1")
step("2")
fail("3")
