from _steps import fail, step

step("1")
fail("2")
step("3")
