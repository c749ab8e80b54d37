"""Owns noticing a worker that died while loading the model, so that the workers after it do not load it again.

``booster_file.check`` refuses every booster known to crash XGBoost, but a crash it does not know of (SIGSEGV,
SIGABRT inside ``load_model`` or the self-test) kills the worker where no ``except`` can catch it, and gunicorn boots
another that dies the same way: ``/ping`` never answers, so SageMaker sees a container that is not there rather
than one that says why, and every death leaves its unpacked ``model-*`` folder in TMPDIR (RAM, on a tmpfs).

Each worker marks its load with a file in TMPDIR (``loading``) and removes the mark once it has a model or a
``ModelError``. gunicorn's master hears of every worker's exit (its ``child_exit`` hook, serving/gunicorn_conf.py):
a mark still there means the worker died loading (a signal, or killed at the timeout), so the master removes what
that worker unpacked and puts the reason in its own environment, which every worker forked later inherits —
those answer 503 with it on ``/ping`` instead of loading. Standard library only: the master imports it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CRASHED_ENV = "SERVING_MODEL_LOAD_CRASHED"  # set by the master after a death; workers read it before loading

logger = logging.getLogger(__name__)


def _mark(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"serving-loading-{pid}"


def unpack_prefix(pid: int | None = None) -> str:
    """The name prefix of the folder worker ``pid`` (this one by default) unpacks a ``model.tar.gz`` into."""
    return f"model-{os.getpid() if pid is None else pid}-"


@contextmanager
def loading() -> Iterator[None]:
    """Mark this worker as loading the model for as long as the block runs (a death inside leaves the mark)."""
    mark = _mark(os.getpid())
    mark.touch()
    try:
        yield
    finally:
        mark.unlink(missing_ok=True)


def crashed() -> str | None:
    """Why the model must not be loaded again (a worker before this one died loading it), or None."""
    return os.environ.get(CRASHED_ENV) or None


def worker_exited(pid: int) -> None:
    """In the master: if worker ``pid`` died loading, clean up after it and keep later workers from loading."""
    mark = _mark(pid)
    if not mark.exists():
        return
    mark.unlink(missing_ok=True)
    for leftover in Path(tempfile.gettempdir()).glob(unpack_prefix(pid) + "*"):
        shutil.rmtree(leftover, ignore_errors=True)
    reason = (f"a worker (pid {pid}) died while loading the model, so no worker loads it again: XGBoost cannot "
              "read this booster, or loading outlasted MODEL_SERVER_TIMEOUT (the log above names the signal)")
    os.environ[CRASHED_ENV] = reason
    logger.error(reason)
