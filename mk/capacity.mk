# Load and capacity: load-test the chain (the local stand-in by default, or a deployed stage), then size it.
# URL: a deployed stage's predict URL (https; its key in SMOKE_API_KEY when the stage needs one); empty = start
# the stand-in on loopback with INFRA_ENV's settings. PROFILE: ramp|spike|soak. LOADTEST_ARGS passes flags
# through, e.g. LOADTEST_ARGS="--peak-rps 40 --duration 60 -c endpoint_max_concurrency=10".
URL ?=
PROFILE ?= ramp
LOADTEST_ARGS ?=
RESULT ?= dist/loadtest/$(PROFILE).json
ADVISE_ARGS ?=

.PHONY: loadtest advise
loadtest: data ## load-test the stand-in, or URL=https://... (PROFILE=ramp|spike|soak): dist/loadtest/PROFILE.{md,json,png}
	$(PY) -m capacity.loadtest --profile $(PROFILE) --env $(INFRA_ENV) \
		$(if $(URL),--url '$(URL)',$(if $(wildcard $(MODEL_TAR)),--model-tarball $(MODEL_TAR))) $(LOADTEST_ARGS)

advise: | $(PY) ## serverless size and monthly cost for RPS=.. P99_MS=.. from a load test's RESULT (prices: capacity/prices.yaml)
	@test -n "$(RPS)" -a -n "$(P99_MS)" || { echo "error: give the target: make advise RPS=20 P99_MS=300" >&2; exit 2; }
	$(PY) -m capacity.advisor --rps '$(RPS)' --p99-ms '$(P99_MS)' --result $(RESULT) $(ADVISE_ARGS)
