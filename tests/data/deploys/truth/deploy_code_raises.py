from _steps import step

step("1")
raise RuntimeError("the deploy code broke")
