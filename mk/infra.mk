# The cloud path: synthesize the CDK app offline, run the local stand-in of the whole chain, deploy.
# INFRA_ENV picks the environment (dev|prod); MODEL_TAR (shared with mk/serving.mk) the exported model;
# INFRA_CONTEXT adds CDK context, e.g. INFRA_CONTEXT="-c github_repo=OWNER/REPO -c endpoint_max_concurrency=10".
# ALARM_EMAIL (environment) subscribes an address to the serving stack's alarm topic.
INFRA_ENV ?= dev
INFRA_CONTEXT ?=
INFRA_OUT ?= infra/cdk.out
# Where `make deploy` writes the stack outputs (PredictUrl, EndpointName) that `make smoke` reads.
CDK_OUTPUTS ?= dist/cdk-outputs.json
INFRA_CDK := infra/node_modules/.bin/cdk
STAND_IN_PORT ?= 8000
STAND_IN_ARGS ?=
# Where `make stand-in-deploy` keeps the background stand-in's model, port, pid and log.
STAND_IN_STATE ?= dist/stand-in
STAND_IN_READY_TIMEOUT ?= 60
# The stacks that never read the model (account, storage, bootstrap) still synthesize the whole app, which hashes
# a model tarball: this placeholder stands in when they are deployed before any model was exported.
PLACEHOLDER_TAR := dist/ci/placeholder-model.tar.gz
# Synth needs no AWS account: no credential lookup via the instance metadata service, no notices,
# version check or telemetry (each would be a network call).
INFRA_OFFLINE := AWS_EC2_METADATA_DISABLED=true CDK_DISABLE_VERSION_CHECK=true CDK_DISABLE_CLI_TELEMETRY=true
# Absolute paths are quoted for the shell: a checkout under a folder with a space must not split them.
INFRA_CDK_ARGS = --no-notices -c env=$(INFRA_ENV) $(if $(MODEL_TAR),-c "model_tarball=$(abspath $(MODEL_TAR))") $(INFRA_CONTEXT)
# Expanded by the shell, inside quotes: an address from a workflow variable never becomes shell code.
ALARM_CONTEXT = $${ALARM_EMAIL:+-c "alarm_email=$$ALARM_EMAIL"}
export ALARM_EMAIL
ACCOUNT_STACK := StudentScore-Account
INFRA_STACKS = $(ACCOUNT_STACK) StudentScore-$(INFRA_ENV)-Serving StudentScore-$(INFRA_ENV)-Storage

.PHONY: placeholder-model synth stand-in deploy deploy-storage infra-bootstrap cdk-bootstrap infra-cli stand-in-deploy stand-in-stop

# The CDK CLI pinned in infra/package-lock.json; `make setup` installs it with the Python environment.
$(INFRA_CDK): infra/package.json infra/package-lock.json
	npm ci --prefix infra --no-audit --no-fund --loglevel=error
	@touch $@

infra-cli: $(INFRA_CDK)
setup: $(INFRA_CDK)

$(PLACEHOLDER_TAR):
	@mkdir -p $(dir $@) && printf 'placeholder: synth only hashes the model asset\n' > $@
# The same by a fixed name, for make files read before this one (a prerequisite is expanded when it is read).
placeholder-model: $(PLACEHOLDER_TAR)

synth: $(INFRA_CDK) | $(PY) ## cdk synth offline into infra/cdk.out (INFRA_ENV=dev|prod, MODEL_TAR, INFRA_CONTEXT)
	cd infra && $(INFRA_OFFLINE) ./node_modules/.bin/cdk synth --quiet --no-lookups \
		--output "$(abspath $(INFRA_OUT))" $(INFRA_CDK_ARGS) $(ALARM_CONTEXT)

stand-in: | $(PY) ## API -> Lambda -> SageMaker chain on 127.0.0.1:STAND_IN_PORT around serving/serve (STAND_IN_ARGS="--request self-test")
	$(PY) -m infra.local --port $(STAND_IN_PORT) $(if $(MODEL_TAR),--model-tarball $(MODEL_TAR)) $(STAND_IN_ARGS)

stand-in-deploy: ## what `make deploy` does, to a background stand-in: serve MODEL_TAR, outputs to CDK_OUTPUTS (keeps the old model if the new one fails)
	$(PY) -m infra.local.deploy --state-dir $(STAND_IN_STATE) --model-tarball $(MODEL_TAR) --outputs-file $(CDK_OUTPUTS) \
		--ready-timeout $(STAND_IN_READY_TIMEOUT)

stand-in-stop: ## stop the background stand-in of `make stand-in-deploy`
	$(PY) -m infra.local.deploy --state-dir $(STAND_IN_STATE) --stop

deploy: $(INFRA_CDK) | $(PY) ## cdk deploy INFRA_ENV's serving + storage stacks (and the account stack), outputs to CDK_OUTPUTS (AWS credentials, Docker)
	@mkdir -p "$$(dirname "$(abspath $(CDK_OUTPUTS))")"
	cd infra && ./node_modules/.bin/cdk deploy --require-approval never --outputs-file "$(abspath $(CDK_OUTPUTS))" \
		$(INFRA_CDK_ARGS) $(ALARM_CONTEXT) $(INFRA_STACKS)

# The steps of a first deploy that come before any model: no real tarball is needed for them.
cdk-bootstrap deploy-storage infra-bootstrap: MODEL_TAR = $(PLACEHOLDER_TAR)

# Each runs the app (infra/cdk.json: ../.venv/bin/python -m infra.app), so each needs the environment first.
cdk-bootstrap: $(INFRA_CDK) $(PLACEHOLDER_TAR) | $(PY) ## once per account and region: `cdk bootstrap` (CDK_ENVIRONMENT=aws://ACCOUNT_ID/REGION, default: the credentials')
	cd infra && ./node_modules/.bin/cdk bootstrap $(INFRA_CDK_ARGS) $(CDK_ENVIRONMENT)

deploy-storage: $(INFRA_CDK) $(PLACEHOLDER_TAR) | $(PY) ## INFRA_ENV's storage stack (DVC remote + MLflow bucket) and the account stack, before any model exists
	cd infra && ./node_modules/.bin/cdk deploy --require-approval never $(INFRA_CDK_ARGS) \
		$(ACCOUNT_STACK) StudentScore-$(INFRA_ENV)-Storage

infra-bootstrap: $(INFRA_CDK) $(PLACEHOLDER_TAR) | $(PY) ## once per account: the GitHub OIDC deploy role (INFRA_CONTEXT="-c github_repo=OWNER/REPO ...")
	cd infra && ./node_modules/.bin/cdk deploy --require-approval never $(INFRA_CDK_ARGS) StudentScore-Bootstrap
