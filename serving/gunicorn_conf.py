"""Owns the fixed gunicorn settings of the container; everything taken from the environment is in ``serve``.

Command-line options given by ``serve`` (bind, workers, timeouts) override nothing here: the two sets do
not overlap.
"""

# Each worker imports the app factory after the fork, so the model is loaded and self-tested per worker
# before that worker accepts a connection (and no model memory is shared copy-on-write by surprise).
preload_app = False
# One request at a time per process: prediction is CPU-bound under the GIL, so processes scale, threads do not.
# gunicorn's sync worker, dispatching only requests that have arrived, draining on SIGTERM and answering its
# own errors in JSON (serving/worker.py).
worker_class = "serving.worker.Worker"
# gunicorn >= 25.1 otherwise creates a control socket under $HOME, which is read-only (or absent) here.
control_socket_disable = True
# worker_tmp_dir stays at its default, TMPDIR: worker heartbeat files need the one writable place (/tmp).


def child_exit(server: object, worker: object) -> None:
    """gunicorn calls this in the master as each worker exits: a worker that died loading the model stops the rest
    from loading it (serving/load_guard.py; imported here, so the master never imports the app)."""
    from serving import load_guard

    load_guard.worker_exited(worker.pid)  # type: ignore[attr-defined]


# One stream (stderr, which SageMaker ships to CloudWatch) and one format for gunicorn and the app's loggers.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        # Off: a log line per request costs throughput and CloudWatch money; SageMaker counts invocations.
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr"},
    },
    "formatters": {
        "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"},
    },
}
