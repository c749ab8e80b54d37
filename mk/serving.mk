# The serving container: run it without Docker, regenerate its pinned requirements, lint its Dockerfile.
MODEL_TAR ?= dist/model.tar.gz
SERVE_PORT ?= 8080
SERVE_DIR := dist/serve-local

# The image's Python (from the Dockerfile's FROM) and every glibc its Debian trixie base (2.41) can run wheels for:
# `manylinux2014` alone would refuse numpy and xgboost-cpu, which ship manylinux_2_27/2_28 wheels only.
IMAGE_PYTHON = $(shell sed -n 's/^FROM .*python:\([0-9]*\.[0-9]*\)\..*/\1/p' serving/Dockerfile)
IMAGE_REQUIREMENTS ?= serving/requirements.txt
IMAGE_PLATFORMS := --platform manylinux2014_x86_64 $(foreach minor,$(shell seq 17 41),--platform manylinux_2_$(minor)_x86_64)

.PHONY: serve-local requirements hadolint image-deps-check
# The launcher gets a model dir holding only model.tar.gz, exactly what `docker run -v ...` gives it.
serve-local: ## serve MODEL_TAR (default dist/model.tar.gz) on 127.0.0.1:SERVE_PORT with the container's launcher
	@test -f "$(MODEL_TAR)" || { echo "error: $(MODEL_TAR) not found; export a model first" >&2; exit 1; }
	mkdir -p $(SERVE_DIR) && ln -sfn "$(abspath $(MODEL_TAR))" $(SERVE_DIR)/model.tar.gz
	SM_MODEL_DIR="$(abspath $(SERVE_DIR))" SERVING_HOST=127.0.0.1 SAGEMAKER_BIND_TO_PORT=$(SERVE_PORT) $(PY) serving/serve serve

requirements: $(UV) ## regenerate serving/requirements.txt (hash-pinned) from uv.lock's serving group
	$(UV) export --frozen --quiet --only-group serving --no-emit-project --format requirements-txt \
		-o serving/requirements.txt

hadolint: | $(PY) ## lint serving/Dockerfile
	$(VENV)/bin/hadolint serving/Dockerfile

# PyPI itself, whatever this machine's pip configuration adds (PIP_CONFIG_FILE=/dev/null: no config files): the
# image's `pip install` sees only PyPI. Needs the network; CI runs it (and tests/serving marks its test `pypi`).
image-deps-check: $(UV) ## serving/requirements.txt installs on the image: linux/amd64, its Python, wheels only, every hash checked
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
		$(TOOLS)/bin/pip download --quiet --no-cache-dir --index-url https://pypi.org/simple \
		$(IMAGE_PLATFORMS) --implementation cp --python-version $(IMAGE_PYTHON) --only-binary=:all: \
		--require-hashes --no-deps -r $(IMAGE_REQUIREMENTS) -d "$$tmp" \
	&& echo "image-deps-check: $$(ls "$$tmp" | wc -l) wheels for linux/amd64, Python $(IMAGE_PYTHON), hashes match"
