from _steps import fail, step

fail("1")
step("2")
step("3")
