module fdtrace.test/fixtures

go 1.19
