# Performance benchmarks against the reference design, the no-op route and `mlflow models serve`.
# Needs Debian's wrk (`apt-get install wrk`); nothing is installed by the benchmark itself.
# BENCH_ARGS passes flags through, e.g. `make bench BENCH_ARGS=--quick` for a smoke run.
BENCH_ARGS ?=

.PHONY: bench bench-deps bench-reliability
bench-deps: ## install Debian's wrk, the load generator (make test needs it for the benchmark's own test)
	@if command -v wrk >/dev/null; then echo "wrk already installed"; else \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends wrk; \
	fi

bench: data bench-deps ## benchmarks vs the reference design (≈5 min, 2 CPUs, wrk): benchmarks/results/latest.{json,md}
	$(PY) -m benchmarks.run $(BENCH_ARGS)

.PHONY: bench-scale
bench-scale: data ## training from 6.6k to 1.32M rows: wall, memory, RMSE vs the floor, logging vs the MLflow idiom (≈6 min): benchmarks/results/scale.{json,md}
	$(PY) -m benchmarks.scale $(BENCH_ARGS)

bench-reliability: data bench-deps ## the fuzzing and fault-injection suite at volume (≈25 min): benchmarks/results/reliability.{json,md}
	$(PY) -m benchmarks.reliability $(BENCH_ARGS)

.PHONY: bench-batches
bench-batches: data ## 10,000-record requests vs the reference, and the largest batch under 6 MB / 4 MB (≈1 min): benchmarks/results/batches.{json,md}
	$(PY) -m benchmarks.batches $(BENCH_ARGS)
