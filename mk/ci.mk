# CI glue for .github/workflows: the workflow checks, the PR metrics diff, the release steps and the job
# summary. Every target also runs locally after `make setup`: what would go to $GITHUB_STEP_SUMMARY goes to
# stdout when that variable is unset.
#
# A release keeps the registry on what is served: release-gate (the gate as a dry run; nothing moves) ->
# release-export (the candidate's bundle) -> deploy -> smoke (the API must answer with the candidate's
# X-Model-Version) -> release-promote (only now does production move) -> verify-release (the API answers with
# production's version). If any step fails, release-restore puts production's version back on the endpoint
# unless verify-release already holds. DEPLOY_TARGET is the deploy step restore uses: `deploy` (AWS) in CI,
# `stand-in-deploy` (the local chain) in the tests and for a local rehearsal.
#
# Variables: DVC_REMOTE (the DVC remote `make data` pulls from; CI sets the S3 one), BASE_REF (metrics-diff's
# base revision), PROMOTE_VERSION / PROMOTE_FORCE / PROMOTE_REASON (release-gate, ci-promote), RELEASE_REFUSE_OLDER
# (release-gate), CDK_OUTPUTS (the deploy's outputs file), SMOKE_URL / SMOKE_ARGS / SMOKE_API_KEY (smoke,
# verify-release), RELEASE_DIR.
WORKFLOWS = $(wildcard .github/workflows/*.yml)
RELEASE_DIR ?= dist/release
CANDIDATE_FILE = $(RELEASE_DIR)/candidate
PRODUCTION_TAR = $(RELEASE_DIR)/production.tar.gz
DEPLOY_TARGET ?= deploy
# Checks PROMOTE_VERSION / PROMOTE_FORCE (workflow inputs) before use and turns them into flags in $$args.
CHECK_PROMOTE_INPUTS = \
	if [ -n "$${PROMOTE_VERSION:-}" ]; then \
		[[ "$$PROMOTE_VERSION" =~ ^[1-9][0-9]{0,8}$$ ]] \
			|| { echo "error: PROMOTE_VERSION must be a registered version number, got '$$PROMOTE_VERSION'" >&2; exit 2; }; \
		args="$$args --version $$PROMOTE_VERSION"; fi; \
	case "$${PROMOTE_FORCE:-false}" in true) args="$$args --force";; false|'') ;; \
		*) echo "error: PROMOTE_FORCE must be true or false, got '$$PROMOTE_FORCE'" >&2; exit 2;; esac
# What can change the metrics, and the metrics themselves (a retrain after a change DVC does not track, such as a
# dependency bump in uv.lock, commits only them); a pull request touching none of it has no metrics diff to show.
METRICS_PATHS := metrics.json dvc.lock data.dvc params.yaml dvc.yaml core experiments serving/__init__.py serving/booster_file.py serving/columns.py \
	serving/layout.py serving/predictor.py serving/profile.py serving/xgb_capi.py
SUMMARY := "$${GITHUB_STEP_SUMMARY:-/dev/stdout}"
# Read by the recipes as shell variables, never pasted into them: their values come from workflow inputs.
export PROMOTE_VERSION PROMOTE_FORCE PROMOTE_REASON RELEASE_REFUSE_OLDER BASE_REF

.PHONY: workflow-check metrics-diff job-summary smoke ci-promote ci-synth release-preflight \
	data-from-remote release-gate release-export release-promote verify-release release-restore main-only

workflow-check: | $(PY) ## validate .github offline: the workflow and Dependabot schemas, then zizmor (medium+ fails)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(VENV)/bin/zizmor --offline --no-progress --min-severity medium .github/workflows

# train-deploy and drift act from main only (the roles trust main's environments or main itself); a dispatch from
# another branch skips their jobs, and a run whose every job was skipped shows green. This is the first job's one
# step there, so such a run fails in red with one line. GITHUB_REF is the runner's own variable (github.ref),
# never pasted into a workflow expression; only the characters a ref may hold are echoed back.
main-only: ## CI: fail in one line unless GITHUB_REF is refs/heads/main (a run dispatched from another branch)
	@if [ "$${GITHUB_REF:-}" = refs/heads/main ]; then echo "main-only: running from main"; exit 0; fi; \
	ref="$$(printf '%s' "$${GITHUB_REF:-}" | tr -cd 'A-Za-z0-9._/-')"; \
	where="'$$ref'"; [ -n "$$ref" ] || where="an unset GITHUB_REF"; \
	echo "::error::this workflow runs from main only; this run came from $$where" \
		"and did nothing: run it again from main"; \
	exit 1

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
# Shared means a server or database another machine reaches: a path (mlruns, ../x, ~/x), sqlite: or file:, or
# a URL naming this machine dies with the runner.
release-preflight: ## fail unless MLFLOW_TRACKING_URI names a shared store (server URL, database URL or SageMaker MLflow ARN)
	@case "$${MLFLOW_TRACKING_URI:-}" in \
		'') echo "error: MLFLOW_TRACKING_URI is not set; a release needs the shared MLflow registry" >&2; exit 1;; \
		*://localhost|*://localhost[:/]*|*@localhost|*@localhost[:/]*|*://127.*|*@127.*|*://\[::1\]*|*@\[::1\]*) \
			echo "error: MLFLOW_TRACKING_URI names this machine; a release needs the shared MLflow registry" >&2; exit 1;; \
		http://*|https://*|arn:aws:sagemaker:*|databricks|databricks://*|postgresql*://*|mysql*://*|mssql*://*) ;; \
		*) echo "error: MLFLOW_TRACKING_URI is a local store; a release needs the shared MLflow registry" >&2; exit 1;; \
	esac; echo "release-preflight: MLflow tracking store is shared"

# Wraps `make promote` so that a gate refusal (or any failure) also reaches the job summary. Inputs arrive as
# environment variables and are checked before use, so a workflow input can never become shell code.
ci-promote: ## make promote from PROMOTE_VERSION / PROMOTE_FORCE=true; a refusal is written to the job summary
	@args="--no-export"; \
	$(CHECK_PROMOTE_INPUTS); \
	reason="$$(printf '%s' "$${PROMOTE_REASON:-}" | tr -cd 'A-Za-z0-9 ._:/()@-')"; \
	[ -z "$$reason" ] || args="$$args --reason '$$reason'"; \
	err="$$(mktemp)"; trap 'rm -f "$$err"' EXIT; \
	if $(MAKE) --no-print-directory promote ARGS="$$args" 2>"$$err"; then cat "$$err" >&2; exit 0; fi; \
	cat "$$err" >&2; \
	line="$$(grep '^error: ' "$$err" | tail -n 1)"; line="$${line#error: }"; \
	{ echo "### Release stopped at promotion"; echo; echo "$${line:-promotion failed; see the step log}"; echo; } >> $(SUMMARY); \
	exit 1

# Synth hashes the model asset and never reads it; a fresh clone has no registry to export a real one from.
ci-synth: placeholder-model | $(PY) ## make synth with a placeholder model file (for CI, where no model has been exported)
	$(MAKE) --no-print-directory synth MODEL_TAR=$(PLACEHOLDER_TAR)

# RELEASE_REFUSE_OLDER=true (the prod job, unless the dispatch named a version) refuses a candidate numbered below
# production's version. Two runs waiting for prod's approval may be approved in either order; their concurrency
# group runs one prod job at a time and drops none, but does not order them by candidate, so the run approved last
# would deploy its older candidate over the newer one. Checked inside the job, after the group let it start.
release-gate: ## the gate as a dry run on PROMOTE_VERSION (or the best for the data): writes the candidate, moves nothing
	@args=""; \
	$(CHECK_PROMOTE_INPUTS); \
	case "$${RELEASE_REFUSE_OLDER:-false}" in true) args="$$args --refuse-older";; false|'') ;; \
		*) echo "error: RELEASE_REFUSE_OLDER must be true or false, got '$$RELEASE_REFUSE_OLDER'" >&2; exit 2;; esac; \
	err="$$(mktemp)"; trap 'rm -f "$$err"' EXIT; \
	if $(PY) -m registry.release $$args --out $(CANDIDATE_FILE) 2>"$$err"; then \
		cat "$$err" >&2; echo "candidate=$$(cat $(CANDIDATE_FILE))" >> "$${GITHUB_OUTPUT:-/dev/null}"; exit 0; fi; \
	cat "$$err" >&2; \
	line="$$(grep '^error: ' "$$err" | tail -n 1)"; line="$${line#error: }"; \
	{ echo "### Release stopped at the gate (nothing was deployed)"; echo; \
	  echo "$${line:-the gate failed; see the step log}"; echo; } >> $(SUMMARY); \
	exit 1

release-export: ## write MODEL_TAR from the candidate release-gate accepted
	@test -s $(CANDIDATE_FILE) || { echo "error: no release candidate in $(CANDIDATE_FILE); run make release-gate" >&2; exit 1; }
	$(PY) -m registry.export --version "$$(cat $(CANDIDATE_FILE))" --out $(MODEL_TAR)

release-promote: ## move production to the candidate, once the endpoint serves it (ci-promote with the candidate's version)
	@test -s $(CANDIDATE_FILE) || { echo "error: no release candidate in $(CANDIDATE_FILE); run make release-gate" >&2; exit 1; }
	PROMOTE_VERSION="$$(cat $(CANDIDATE_FILE))" $(MAKE) --no-print-directory ci-promote

verify-release: ## the deployed API (SMOKE_URL or CDK_OUTPUTS) answers with the version production names
	@mkdir -p $(RELEASE_DIR)
	$(PY) -m registry.export --out $(PRODUCTION_TAR)
	$(PY) -m infra.smoke $(if $(SMOKE_URL),--url '$(SMOKE_URL)',--outputs-file $(CDK_OUTPUTS)) \
		--model-tarball $(PRODUCTION_TAR) $(SMOKE_ARGS)
	@echo "verify-release: the endpoint serves the version production names"

# Only the deploy step writes CDK_OUTPUTS (cdk deploy --outputs-file, on success): a job without it deployed
# nothing (a gate refusal, a failed export) or its deploy failed and CloudFormation rolled the stacks back, so
# the endpoint still serves what it served before the job. Without this check a fresh runner could not find
# the API, took that for a broken endpoint and deployed production again. Restoring a real endpoint (DEPLOY_TARGET
# deploy) by hand needs what the workflow's step has: the shared registry (release-preflight; a laptop's own
# mlflow.db would put its model on prod) and, for prod, the API's key (a 403 is no proof of a wrong version).
release-restore: ## after a failed release: unless verify-release holds, deploy production's version again (DEPLOY_TARGET)
	@if [ -z "$(SMOKE_URL)" ] && [ ! -f "$(CDK_OUTPUTS)" ]; then \
		echo "release-restore: this run deployed nothing ($(CDK_OUTPUTS) absent); nothing to restore"; exit 0; fi; \
	if [ "$(DEPLOY_TARGET)" = deploy ]; then \
		$(MAKE) --no-print-directory release-preflight || exit 1; \
		if [ "$(INFRA_ENV)" = prod ] && [ -z "$${SMOKE_API_KEY:-}" ]; then \
			echo "error: SMOKE_API_KEY is not set: prod's API refuses a check without its key, which would read as" \
				"not serving production and deploy it again" >&2; exit 1; fi; fi; \
	if $(MAKE) --no-print-directory verify-release; then \
		echo "release-restore: the endpoint already serves production; nothing to restore"; exit 0; fi; \
	echo "release-restore: the endpoint does not serve production; deploying production's version again"; \
	if $(MAKE) --no-print-directory export ARGS="--out $(MODEL_TAR)" && \
		$(MAKE) --no-print-directory $(DEPLOY_TARGET) && $(MAKE) --no-print-directory verify-release; then \
		{ echo "### Release failed; production's version was deployed again"; echo; } >> $(SUMMARY); exit 0; fi; \
	{ echo "### Release failed, and production's version could not be deployed again"; echo; \
	  echo "The endpoint may not serve what production names; see the step log."; echo; } >> $(SUMMARY); \
	exit 1

smoke: ## POST a record to the deployed API (URL from CDK_OUTPUTS or SMOKE_URL); expects MODEL_TAR's version if present
	$(PY) -m infra.smoke $(if $(SMOKE_URL),--url '$(SMOKE_URL)',--outputs-file $(CDK_OUTPUTS)) \
		$(if $(wildcard $(MODEL_TAR)),--model-tarball $(MODEL_TAR)) $(SMOKE_ARGS)

# The metrics are the released version's own (its bundle's metadata.json), not the workspace's metrics.json: the
# prod job never trains, and the gate may release an older version than the last training's.
job-summary: ## the released version and its test metrics (both from MODEL_TAR) into the job summary
	@section="$$($(PY) -m infra.smoke.release --job-summary $(MODEL_TAR))" || exit 1; \
	{ echo "$$section"; echo; } >> $(SUMMARY)
