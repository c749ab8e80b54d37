# Monitoring: drift of captured traffic, live accuracy from late labels, labelled traffic into the next data version.
# DRIFT_ARGS / FEEDBACK_ARGS pass flags through, e.g. DRIFT_ARGS="--capture s3://BUCKET/capture/ --days 7".
# LABELS is the labels CSV (request_id, actual[, row]) for feedback and append.
DRIFT_ARGS ?=
FEEDBACK_ARGS ?=
LABELS ?=

.PHONY: drift feedback append-labels bench-drift bench-capture

drift: setup ## compare captured traffic with its model's reference profile (exit 1 on drift): dist/reports/drift
	$(PY) -m monitoring.drift $(DRIFT_ARGS)

feedback: setup ## live RMSE/MAE/R² per version from late labels (LABELS=FILE; exit 1 when worse than its test RMSE)
	@[ -n "$(LABELS)" ] || { echo "error: set LABELS=path/to/labels.csv (request_id, actual[, row])" >&2; exit 2; }
	$(PY) -m monitoring.feedback --labels '$(LABELS)' $(FEEDBACK_ARGS)

append-labels: setup ## feedback, then append the labelled records to the DVC-tracked table and dvc add it (LABELS=FILE)
	@[ -n "$(LABELS)" ] || { echo "error: set LABELS=path/to/labels.csv (request_id, actual[, row])" >&2; exit 2; }
	$(PY) -m monitoring.feedback --labels '$(LABELS)' --append $(FEEDBACK_ARGS)

bench-drift: setup ## the drift job on 100,000 captured records (target < 30 s): benchmarks/results/drift.{json,md}
	$(PY) -m benchmarks.drift $(BENCH_ARGS)

bench-capture: setup ## median latency through the local chain with capture off / to a folder / to moto's Firehose (target ≤ +5%)
	$(PY) -m benchmarks.capture $(BENCH_ARGS)
