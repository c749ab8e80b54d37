# Performance benchmarks against the reference design, the no-op route and `mlflow models serve`.
# Needs Debian's wrk (`apt-get install wrk`); nothing is installed by the benchmark itself.
# BENCH_ARGS passes flags through, e.g. `make bench BENCH_ARGS=--quick` for a smoke run.
BENCH_ARGS ?=

.PHONY: bench
bench: data ## benchmarks vs the reference design (≈10 min, 2 CPUs, wrk): benchmarks/results/latest.{json,md}
	$(PY) -m benchmarks.run $(BENCH_ARGS)
