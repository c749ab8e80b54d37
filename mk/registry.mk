# The release path: promote a registered version through the gate, roll back, show history, export.
# Extra flags pass through ARGS, e.g. `make promote ARGS="--version 3 --reason 'new data'"`.
PY := .venv/bin/python

.PHONY: promote export rollback history
promote: | $(PY) ## gate the best version for the current data and move the production alias (ARGS=--version N --dry-run --force --reason ...)
	$(PY) -m registry.promote $(ARGS)

export: | $(PY) ## write dist/model.tar.gz from the production version (ARGS=--version N --out PATH --s3-uri s3://...)
	$(PY) -m registry.export $(ARGS)

rollback: | $(PY) ## move production back to the previous version (ARGS=--reason ... --dry-run)
	$(PY) -m registry.promote --rollback $(ARGS)

history: | $(PY) ## print every promotion and rollback recorded in the registry
	$(PY) -m registry.promote --history $(ARGS)
