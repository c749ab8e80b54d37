# The serving container: run it without Docker, regenerate its pinned requirements, lint its Dockerfile.
MODEL_TAR ?= dist/model.tar.gz
SERVE_PORT ?= 8080
SERVE_DIR := dist/serve-local

.PHONY: serve-local requirements hadolint
# The launcher gets a model dir holding only model.tar.gz, exactly what `docker run -v ...` gives it.
serve-local: ## serve MODEL_TAR (default dist/model.tar.gz) on 127.0.0.1:SERVE_PORT with the container's launcher
	@test -f "$(MODEL_TAR)" || { echo "error: $(MODEL_TAR) not found; export a model first" >&2; exit 1; }
	mkdir -p $(SERVE_DIR) && ln -sfn "$(abspath $(MODEL_TAR))" $(SERVE_DIR)/model.tar.gz
	SM_MODEL_DIR=$(abspath $(SERVE_DIR)) SERVING_HOST=127.0.0.1 SAGEMAKER_BIND_TO_PORT=$(SERVE_PORT) $(PY) serving/serve serve

requirements: $(UV) ## regenerate serving/requirements.txt (hash-pinned) from uv.lock's serving group
	$(UV) export --frozen --quiet --only-group serving --no-emit-project --format requirements-txt \
		-o serving/requirements.txt

hadolint: ## lint serving/Dockerfile
	$(VENV)/bin/hadolint serving/Dockerfile
