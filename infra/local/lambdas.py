"""Owns the stand-in's Lambda instances: the predict handler in processes of its own, one event at a time each.

Lambda gives each execution environment one event at a time and adds environments while requests arrive
concurrently. The handler cannot share a process between two events: Powertools keeps the event being
resolved in a class attribute (``BaseRouter.current_event``) and metrics in a set shared by every ``Metrics``
object. So each instance here is a process, spawned (not forked) so that it imports the handler afresh as a new
execution environment does; its first event pays that import, as a Lambda cold start does.

``invoke`` waits at most the integration timeout and raises ``TimeoutError`` after it, which the front door
answers as API Gateway does.
"""

from __future__ import annotations

import importlib
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from infra.local.events import LambdaContext

_handler: Any = None


def _load(module: str) -> None:
    global _handler
    _handler = importlib.import_module(module)
    # The handler makes its boto3 client on first use; make it now, so that a warmed instance is fully warm.
    make_client = getattr(_handler, "sagemaker_runtime", None)
    if callable(make_client):
        make_client()


def _invoke(event: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    return _handler.lambda_handler(event, LambdaContext(timeout_s=timeout_s))


def _nap(seconds: float) -> None:
    time.sleep(seconds)


class LambdaPool:
    """``instances`` Lambda execution environments running ``module``'s ``lambda_handler``."""

    def __init__(self, *, module: str, instances: int, function_timeout_s: float = 28.0) -> None:
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}")
        self.instances = instances
        self.function_timeout_s = function_timeout_s
        self._executor = ProcessPoolExecutor(
            max_workers=instances,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_load,
            initargs=(module,),
        )

    def warm(self) -> None:
        """Start every instance now (the executor starts them lazily), so a load test measures warm Lambdas."""
        naps: list[Future[None]] = [self._executor.submit(_nap, 0.05) for _ in range(self.instances)]
        for nap in naps:
            nap.result()

    def invoke(self, event: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Run one event on a free instance (waiting for one if all are busy); raise TimeoutError past ``timeout_s``."""
        return self._executor.submit(_invoke, event, self.function_timeout_s).result(timeout=timeout_s)

    def shutdown(self) -> None:
        """Stop the instances; events still queued are dropped."""
        self._executor.shutdown(wait=True, cancel_futures=True)
