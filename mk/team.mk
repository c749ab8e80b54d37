# Team mode: a shared MLflow server on PostgreSQL + S3 (moto here), and Optuna workers sharing one study.
# `make team-up`, then `eval "$(.venv/bin/python -m team env)"` and `make train` (or dvc repro) logs to it;
# `make team-worker STUDY=<name printed by the training>` adds a worker on this machine (the stack listens on
# 127.0.0.1 only; another machine's worker needs a reachable STORAGE= and MLFLOW_TRACKING_URI, README Team mode).
TEAM_STATE ?= team/run
STUDY ?=
STORAGE ?=

.PHONY: team-deps team-up team-down team-env team-worker test-team bench-workers
team-deps: ## install the PostgreSQL server (Debian package) the team stack and its tests need
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then \
		echo "PostgreSQL server already installed"; \
	else \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends postgresql; \
	fi

team-up: setup ## start PostgreSQL, moto (S3) and mlflow server on loopback; prints MLFLOW_TRACKING_URI and OPTUNA_STORAGE
	$(PY) -m team up --state-dir $(TEAM_STATE)

team-down: ## stop the team stack and delete its database and artifacts (FORCE=1: even while a training or worker runs)
	$(PY) -m team down --state-dir $(TEAM_STATE) $(if $(filter 1 true yes,$(FORCE)),--force)

team-env: ## print export lines for MLFLOW_TRACKING_URI and OPTUNA_STORAGE of the running stack (to eval)
	@$(PY) -m team env --state-dir $(TEAM_STATE)

# The storage URL holds the database password: it reaches the worker in its environment, never on a command
# line (make echoes the recipe, and ps shows every process's arguments to every user). STUDY arrives the same way,
# read by the shell, never pasted into the recipe: a name with a quote in it is just a name.
team-worker: export OPTUNA_STORAGE := $(or $(STORAGE),$(OPTUNA_STORAGE))
team-worker: export STUDY := $(STUDY)
team-worker: ## join a training's study: STUDY=<name> [STORAGE=<url>, default: OPTUNA_STORAGE]
	@test -n "$$STUDY" || { echo "error: STUDY=<study name printed by the training> is required" >&2; exit 2; }
	$(PY) -m experiments.worker --study "$$STUDY"

test-team: data ## the team-mode tests (real PostgreSQL, moto server and mlflow server)
	$(VENV)/bin/pytest tests/team $(PYTEST_ARGS)

bench-workers: data ## trials/min with 1 and 2 workers on one study (own team stack, ≈4 min): benchmarks/results/workers.{json,md}
	$(PY) -m benchmarks.workers $(BENCH_ARGS)
