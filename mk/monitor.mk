# Monitoring: drift of captured traffic, live accuracy from late labels, labelled traffic into the next data version.
# DRIFT_ARGS / FEEDBACK_ARGS pass flags through, e.g. DRIFT_ARGS="--capture s3://BUCKET/capture/ --days 7".
# LABELS is the labels CSV (request_id, actual[, row]) for feedback and append. It reaches the recipe through
# the environment, never pasted into it as shell code: a path with a quote in it is just a path.
DRIFT_ARGS ?=
FEEDBACK_ARGS ?=
LABELS ?=
export LABELS

.PHONY: drift feedback append-labels bench-drift bench-capture

drift: setup ## compare captured traffic with its model's reference profile (exit 1 on drift): dist/reports/drift
	$(PY) -m monitoring.drift $(DRIFT_ARGS)

feedback: setup ## live RMSE/MAE/R² per version from late labels (LABELS=FILE; exit 1 when worse than its test RMSE)
	@[ -n "$${LABELS:-}" ] || { echo "error: set LABELS=path/to/labels.csv (request_id, actual[, row])" >&2; exit 2; }
	$(PY) -m monitoring.feedback --labels "$$LABELS" $(FEEDBACK_ARGS)

append-labels: setup ## feedback, then append the labelled records to the DVC-tracked table and dvc add it (LABELS=FILE)
	@[ -n "$${LABELS:-}" ] || { echo "error: set LABELS=path/to/labels.csv (request_id, actual[, row])" >&2; exit 2; }
	$(PY) -m monitoring.feedback --labels "$$LABELS" --append $(FEEDBACK_ARGS)

bench-drift: setup ## the drift job on 100,000 captured records (target < 30 s): benchmarks/results/drift.{json,md}
	$(PY) -m benchmarks.drift $(BENCH_ARGS)

bench-capture: setup ## median latency through the local chain with capture off / to a folder / to moto's Firehose (target ≤ +5%)
	$(PY) -m benchmarks.capture $(BENCH_ARGS)

# --- CI glue for .github/workflows/drift.yml (each also runs locally) ----------------------------------------
# Inputs arrive as environment variables and are checked before use, never pasted into the recipe as code:
# CAPTURE_URI (s3://BUCKET/capture/), DRIFT_DAYS (window length, default 1), DRIFT_VERSION (empty: the busiest).
# The window is the DRIFT_DAYS days before today's 00:00 UTC: ending "now", each day's window moved with the time
# the scheduler started the job (gaps and overlaps between days) and held the last minutes' records that Firehose
# had not delivered yet (they were never judged).
DRIFT_OUT ?= dist/reports/drift
export CAPTURE_URI DRIFT_DAYS DRIFT_VERSION

.PHONY: monitor-setup ci-drift drift-summary

monitor-setup: $(UV) ## CI: .venv with the monitoring group only (locally this trims .venv; make setup restores it)
	$(UV) sync --frozen --quiet --no-default-groups --group monitoring

ci-drift: ## the drift job on CAPTURE_URI over the DRIFT_DAYS days before today, UTC (DRIFT_VERSION: one version); exit 1 on drift
	@case "$${CAPTURE_URI:-}" in s3://?*) ;; *) echo "error: CAPTURE_URI must be s3://BUCKET/PREFIX, got '$${CAPTURE_URI:-}'" >&2; exit 2;; esac; \
	days="$${DRIFT_DAYS:-1}"; [[ "$$days" =~ ^[0-9]+(\.[0-9]+)?$$ ]] \
		|| { echo "error: DRIFT_DAYS must be a number of days, got '$$days'" >&2; exit 2; }; \
	version=(); if [ -n "$${DRIFT_VERSION:-}" ]; then [[ "$$DRIFT_VERSION" =~ ^[1-9][0-9]{0,8}$$ ]] \
		|| { echo "error: DRIFT_VERSION must be a registered version number, got '$$DRIFT_VERSION'" >&2; exit 2; }; \
		version=(--version "$$DRIFT_VERSION"); fi; \
	$(PY) -m monitoring.drift --capture "$$CAPTURE_URI" --days "$$days" --until "$$(date -u +%F)" "$${version[@]}" \
		--out $(DRIFT_OUT)

drift-summary: ## the drift summary (DRIFT_OUT/summary.json) as markdown into the job summary
	@$(PY) -m monitoring.summary $(DRIFT_OUT)/summary.json >> $(SUMMARY)
