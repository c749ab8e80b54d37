"""Owns every call into XGBoost's C API that bypasses its Python wrapper: the one place to check on an upgrade.

Two hot loops use it, each with a parity test against the plain XGBoost call it replaces
(``tests/serving/test_xgb_capi.py``):
- serving's dense prediction (``DensePredict``, equal to ``Booster.inplace_predict``);
- training's early-stopping loop (``boost_with_early_stopping``, equal to ``xgb.train(...,
  early_stopping_rounds=...)``).
Both rely on ``xgb.core._LIB`` and the C functions ``XGBoosterPredictFromDense``, ``XGProxyDMatrixCreate``,
``XGDMatrixFree``, ``XGBoosterUpdateOneIter``, ``XGBoosterEvalOneIter`` and ``XGBGetLastError``.
"""

from __future__ import annotations

import ctypes
import json
import math
import threading
import weakref
from typing import Any

import numpy as np
import xgboost as xgb


class CapiError(RuntimeError):
    """XGBoost's C API reported a failure; the message is XGBoost's own."""


def _last_error(lib: Any) -> str:
    return lib.XGBGetLastError().decode()


class DensePredict:
    """XGBoost's own in-place prediction, called through its C API without the Python wrapper around it.

    ``Booster.inplace_predict`` spends about twice as long in Python (argument checks for a dozen input
    types, JSON built per call, a ctypes class made per result) as XGBoost spends predicting one record,
    and it makes XGBoost build a new proxy matrix per call, whose set-up reads the cgroup CPU quota files
    every time. Here the arguments are built once, each thread keeps one proxy matrix, and each call passes
    a dense float32 matrix's array interface to the same C function, ``XGBoosterPredictFromDense``; the
    result is copied out at once, because XGBoost reuses the buffer on the next call in this thread.
    """

    def __init__(self, booster: xgb.Booster) -> None:
        self._lib = xgb.core._LIB  # the library the booster was loaded by; its handle is only valid there
        self._handle = booster.handle
        self._args = json.dumps({"type": 0, "training": False, "iteration_begin": 0, "iteration_end": 0,
                                 "missing": math.nan, "strict_shape": False, "cache_id": 0}).encode()
        self._typestr = np.dtype(np.float32).str
        # A proxy matrix holds the array of the call in progress, so threads (MLflow's server) need their own.
        self._local = threading.local()

    def _proxy(self) -> ctypes.c_void_p:
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            proxy = self._local.proxy = _ProxyMatrix(self._lib)
        return proxy.handle

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """One float64 prediction per row of a C-contiguous float32 matrix.

        Raises:
            CapiError: XGBoost refused the call or returned another shape.
        """
        rows = matrix.shape[0]
        interface = (f'{{"data": [{matrix.ctypes.data}, true], "shape": [{rows}, {matrix.shape[1]}], '
                     f'"strides": null, "typestr": "{self._typestr}", "version": 3}}').encode()
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        out = ctypes.POINTER(ctypes.c_float)()
        status = self._lib.XGBoosterPredictFromDense(self._handle, interface, self._args, self._proxy(),
                                                     ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(out))
        if status != 0:
            raise CapiError(f"XGBoost prediction failed: {_last_error(self._lib)}")
        if dims.value != 1 or shape[0] != rows:
            raise CapiError(f"XGBoost returned {[shape[i] for i in range(dims.value)]} values for {rows} rows")
        return np.ctypeslib.as_array(out, shape=(rows,)).astype(np.float64)


class _ProxyMatrix:
    """An XGBoost proxy matrix (the input slot of in-place prediction), freed with this object."""

    def __init__(self, lib: Any) -> None:
        self.handle = ctypes.c_void_p()
        if lib.XGProxyDMatrixCreate(ctypes.byref(self.handle)) != 0:
            raise CapiError(f"XGBoost proxy matrix: {_last_error(lib)}")
        weakref.finalize(self, lib.XGDMatrixFree, self.handle)


def boost_with_early_stopping(booster: xgb.Booster, fit: xgb.DMatrix, val: xgb.DMatrix, *, max_rounds: int,
                              early_stopping_rounds: int) -> int:
    """Boost ``booster`` on ``fit`` until its score on ``val`` has not improved for ``early_stopping_rounds``.

    The same rule as ``xgb.train(..., early_stopping_rounds=...)`` (strictly lower is better, the score as
    XGBoost reports it, the first round is the best so far even when NaN), with each round's update and
    evaluation called straight through XGBoost's C API: the Python wrapper re-checks the matrices' feature
    names twice a round, which cost as much as a round of training on small folds. Returns the number of
    rounds that gave the best score (the booster may hold more).

    Raises:
        CapiError: XGBoost refused an update or an evaluation.
    """
    lib, handle = xgb.core._LIB, booster.handle
    evals, names, message = (ctypes.c_void_p * 1)(val.handle.value), (ctypes.c_char_p * 1)(b"val"), \
        ctypes.c_char_p()
    best, best_round = math.nan, 0
    for iteration in range(max_rounds):
        current = ctypes.c_int(iteration)
        if (lib.XGBoosterUpdateOneIter(handle, current, fit.handle) != 0
                or lib.XGBoosterEvalOneIter(handle, current, evals, names, ctypes.c_uint64(1),
                                            ctypes.byref(message)) != 0):
            raise CapiError(_last_error(lib))
        score = float(message.value.rsplit(b":", 1)[1])  # "[12]\tval-rmse:2.0812..."
        if iteration == 0 or score < best:
            best, best_round = score, iteration
        elif iteration - best_round >= early_stopping_rounds:
            break
    return best_round + 1
