# CI glue for .github/workflows: the workflow checks, the PR metrics diff, the release steps (S3 data, gated
# promote, deploy with outputs, smoke test) and the job summary. Every target also runs locally after
# `make setup`: what would go to $GITHUB_STEP_SUMMARY goes to stdout when that variable is unset.
#
# Variables: DVC_REMOTE (the DVC remote `make data` pulls from; CI sets the S3 one), BASE_REF (metrics-diff's
# base revision), PROMOTE_VERSION / PROMOTE_FORCE / PROMOTE_REASON (ci-promote), CDK_OUTPUTS (the deploy's
# outputs file), SMOKE_URL / SMOKE_ARGS / SMOKE_API_KEY (smoke).
WORKFLOWS = $(wildcard .github/workflows/*.yml)
CI_PLACEHOLDER_TAR := dist/ci/placeholder-model.tar.gz
# What can change the metrics; a pull request touching none of it has no metrics diff to show.
METRICS_PATHS := data.dvc params.yaml dvc.yaml core experiments serving/__init__.py serving/layout.py serving/predictor.py serving/xgb_capi.py
SUMMARY := "$${GITHUB_STEP_SUMMARY:-/dev/stdout}"
# Read by the recipes as shell variables, never pasted into them: their values come from workflow inputs.
export PROMOTE_VERSION PROMOTE_FORCE PROMOTE_REASON BASE_REF

.PHONY: workflow-check metrics-diff job-summary smoke ci-promote ci-synth release-preflight \
	data-from-remote

workflow-check: ## validate .github/workflows offline: GitHub's workflow schema, then zizmor (medium+ fails)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	$(VENV)/bin/zizmor --offline --no-progress --min-severity medium .github/workflows

# `git diff BASE` (not BASE...HEAD) also counts uncommitted changes locally; in a pull request's merge
# checkout it is exactly the change under review.
metrics-diff: ## markdown `dvc metrics diff` against BASE_REF (default origin/main, else HEAD~1) into the job summary
	@base="$${BASE_REF:-}"; \
	if [ -z "$$base" ]; then git rev-parse -q --verify origin/main >/dev/null && base=origin/main || base=HEAD~1; fi; \
	git rev-parse -q --verify "$$base^{commit}" >/dev/null \
		|| { echo "error: metrics-diff: unknown base revision '$$base' (fetch it, or set BASE_REF)" >&2; exit 1; }; \
	if git diff --quiet "$$base" -- $(METRICS_PATHS); then \
		echo "metrics-diff: $(METRICS_PATHS) unchanged since $$base; nothing to compare"; exit 0; fi; \
	table="$$($(DVC) metrics diff --md "$$base")" || exit 1; \
	{ echo "### Metrics: $$base → this change"; echo; echo "$${table:-No metric changed.}"; echo; } >> $(SUMMARY)

# DVC_REMOTE set: pull from that remote first; data's own `dvc pull` (default remote) then finds every
# object in the cache and fetches nothing. The S3 remote is added once in .dvc/config (see the README).
ifneq ($(strip $(DVC_REMOTE)),)
data: data-from-remote
endif
data-from-remote: setup
	$(DVC) pull --quiet -r $(DVC_REMOTE) data.dvc

# A release writes to the registry; an ephemeral sqlite store on a CI runner would vanish with the runner.
release-preflight: ## fail unless MLFLOW_TRACKING_URI names a shared store (server URL or SageMaker MLflow ARN)
	@case "$${MLFLOW_TRACKING_URI:-}" in \
		'') echo "error: MLFLOW_TRACKING_URI is not set; a release needs the shared MLflow registry" >&2; exit 1;; \
		sqlite:*|file:*|/*|./*) echo "error: MLFLOW_TRACKING_URI is a local store; a release needs the shared MLflow registry" >&2; exit 1;; \
	esac; echo "release-preflight: MLflow tracking store is shared"

# Wraps `make promote` so that a gate refusal (or any failure) also reaches the job summary. Inputs arrive as
# environment variables and are checked before use, so a workflow input can never become shell code.
ci-promote: ## make promote from PROMOTE_VERSION / PROMOTE_FORCE=true; a refusal is written to the job summary
	@args="--no-export"; \
	if [ -n "$${PROMOTE_VERSION:-}" ]; then \
		[[ "$$PROMOTE_VERSION" =~ ^[1-9][0-9]{0,8}$$ ]] \
			|| { echo "error: PROMOTE_VERSION must be a registered version number, got '$$PROMOTE_VERSION'" >&2; exit 2; }; \
		args="$$args --version $$PROMOTE_VERSION"; fi; \
	case "$${PROMOTE_FORCE:-false}" in true) args="$$args --force";; false|'') ;; \
		*) echo "error: PROMOTE_FORCE must be true or false, got '$$PROMOTE_FORCE'" >&2; exit 2;; esac; \
	reason="$$(printf '%s' "$${PROMOTE_REASON:-}" | tr -cd 'A-Za-z0-9 ._:/()@-')"; \
	[ -z "$$reason" ] || args="$$args --reason '$$reason'"; \
	err="$$(mktemp)"; trap 'rm -f "$$err"' EXIT; \
	if $(MAKE) --no-print-directory promote ARGS="$$args" 2>"$$err"; then cat "$$err" >&2; exit 0; fi; \
	cat "$$err" >&2; \
	line="$$(grep '^error: ' "$$err" | tail -n 1)"; line="$${line#error: }"; \
	{ echo "### Release stopped at promotion"; echo; echo "$${line:-promotion failed; see the step log}"; echo; } >> $(SUMMARY); \
	exit 1

# Synth hashes the model asset and never reads it; a fresh clone has no registry to export a real one from.
ci-synth: ## make synth with a placeholder model file (for CI, where no model has been exported)
	@mkdir -p $(dir $(CI_PLACEHOLDER_TAR)) && printf 'placeholder: synth only hashes the model asset\n' > $(CI_PLACEHOLDER_TAR)
	$(MAKE) --no-print-directory synth MODEL_TAR=$(CI_PLACEHOLDER_TAR)

smoke: ## POST a record to the deployed API (URL from CDK_OUTPUTS or SMOKE_URL); expects MODEL_TAR's version if present
	$(PY) -m infra.smoke $(if $(SMOKE_URL),--url '$(SMOKE_URL)',--outputs-file $(CDK_OUTPUTS)) \
		$(if $(wildcard $(MODEL_TAR)),--model-tarball $(MODEL_TAR)) $(SMOKE_ARGS)

job-summary: ## the released version (from MODEL_TAR) and the metrics table into the job summary
	@line="$$($(PY) -m infra.smoke.release $(MODEL_TAR))" || exit 1; \
	table="$$($(DVC) metrics show --md)" || exit 1; \
	{ echo "### Release"; echo; echo "$$line"; echo; echo "#### Metrics"; echo; echo "$$table"; echo; } >> $(SUMMARY)
