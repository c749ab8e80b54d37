# The cloud path: synthesize the CDK app offline, run the local stand-in of the whole chain, deploy.
# INFRA_ENV picks the environment (dev|prod); MODEL_TAR (shared with mk/serving.mk) the exported model;
# INFRA_CONTEXT adds CDK context, e.g. INFRA_CONTEXT="-c github_repo=OWNER/REPO -c endpoint_max_concurrency=10".
INFRA_ENV ?= dev
INFRA_CONTEXT ?=
INFRA_OUT ?= infra/cdk.out
# Where `make deploy` writes the stack outputs (PredictUrl, EndpointName) that `make smoke` reads.
CDK_OUTPUTS ?= dist/cdk-outputs.json
INFRA_CDK := infra/node_modules/.bin/cdk
STAND_IN_PORT ?= 8000
STAND_IN_ARGS ?=
# Synth needs no AWS account: no credential lookup via the instance metadata service, no notices,
# version check or telemetry (each would be a network call).
INFRA_OFFLINE := AWS_EC2_METADATA_DISABLED=true CDK_DISABLE_VERSION_CHECK=true CDK_DISABLE_CLI_TELEMETRY=true
INFRA_CDK_ARGS = --no-notices -c env=$(INFRA_ENV) $(if $(MODEL_TAR),-c model_tarball=$(abspath $(MODEL_TAR))) $(INFRA_CONTEXT)
INFRA_STACKS = StudentScore-$(INFRA_ENV)-Serving StudentScore-$(INFRA_ENV)-Storage

.PHONY: synth stand-in deploy infra-bootstrap infra-cli

# The CDK CLI pinned in infra/package-lock.json; `make setup` installs it with the Python environment.
$(INFRA_CDK): infra/package.json infra/package-lock.json
	npm ci --prefix infra --no-audit --no-fund --loglevel=error
	@touch $@

infra-cli: $(INFRA_CDK)
setup: $(INFRA_CDK)

synth: $(INFRA_CDK) ## cdk synth offline into infra/cdk.out (INFRA_ENV=dev|prod, MODEL_TAR, INFRA_CONTEXT)
	cd infra && $(INFRA_OFFLINE) ./node_modules/.bin/cdk synth --quiet --no-lookups \
		--output $(abspath $(INFRA_OUT)) $(INFRA_CDK_ARGS)

stand-in: ## API -> Lambda -> SageMaker chain on 127.0.0.1:STAND_IN_PORT around serving/serve (STAND_IN_ARGS="--request self-test")
	$(PY) -m infra.local --port $(STAND_IN_PORT) $(if $(MODEL_TAR),--model-tarball $(MODEL_TAR)) $(STAND_IN_ARGS)

deploy: $(INFRA_CDK) ## cdk deploy INFRA_ENV's serving + storage stacks, outputs to CDK_OUTPUTS (AWS credentials, Docker)
	@mkdir -p $(dir $(abspath $(CDK_OUTPUTS)))
	cd infra && ./node_modules/.bin/cdk deploy --require-approval never --outputs-file $(abspath $(CDK_OUTPUTS)) \
		$(INFRA_CDK_ARGS) $(INFRA_STACKS)

infra-bootstrap: $(INFRA_CDK) ## once per account: the GitHub OIDC deploy role (INFRA_CONTEXT="-c github_repo=OWNER/REPO")
	cd infra && ./node_modules/.bin/cdk deploy --require-approval never $(INFRA_CDK_ARGS) StudentScore-Bootstrap
