"""Owns the Optuna search: the study, its storage, the sampled XGBoost parameters and the CV objective.

Several processes may run trials of one study through a shared RDB storage (PostgreSQL for a team). Each
running trial then sends a heartbeat; a trial whose process died (no heartbeat for ``GRACE_S``) is marked
failed by whichever process looks next and re-queued once with the same parameters, so a killed worker
loses at most the trial it was running.
"""

from __future__ import annotations

import ctypes
import math
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import xgboost as xgb
from sklearn.model_selection import KFold

from experiments.config import SearchSpace, TrainParams


@dataclass(frozen=True)
class CvResult:
    """Cross-validated RMSE of one parameter set, and the boosting rounds early stopping chose."""

    rmse: float
    rmse_std: float
    rounds: int


# A trial sends a heartbeat every HEARTBEAT_S; after GRACE_S without one its process is taken for dead. The
# grace is several heartbeats long so that a busy but alive worker is never failed; a trial here takes
# seconds, so losing GRACE_S on a crash costs little. A trial killed twice in a row is not retried again.
HEARTBEAT_S = 5
GRACE_S = 20
MAX_RETRY = 2
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
POLL_S = 1.0


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """``journal:PATH`` is Optuna's journal file (one person, several local processes); anything else is a
    SQLAlchemy URL of an RDB storage with heartbeats, e.g. ``postgresql+psycopg://...`` for a team."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    # pre_ping: a worker outlives a database restart or a dropped idle connection instead of failing a trial.
    engine = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
    with warnings.catch_warnings():
        # Heartbeats have been "experimental" since Optuna 2.8; the warning would print on every worker start.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY))


def _sampler(seed: int | None, startup_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(startup_trials, 1))


def _pruner(startup_trials: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1)


def make_study(*, name: str, storage: str, seed: int, startup_trials: int) -> optuna.Study:
    """Create or join the study ``name``: a seeded TPE sampler and a median pruner over CV folds."""
    return optuna.create_study(
        study_name=name,
        storage=make_storage(storage),
        direction="minimize",
        sampler=_sampler(seed, startup_trials),
        pruner=_pruner(startup_trials),
        load_if_exists=True,
    )


def join_study(*, name: str, storage: str, startup_trials: int) -> optuna.Study | None:
    """Load the existing study ``name`` as a worker, or None when the storage has no such study.

    The worker's sampler is unseeded on purpose: workers sharing one seed would propose the same
    parameters as each other during the random start-up trials.
    """
    store = make_storage(storage)
    if name not in {s.study_name for s in optuna.study.get_all_study_summaries(store, include_best_trial=False)}:
        return None
    return optuna.load_study(study_name=name, storage=store, sampler=_sampler(None, startup_trials),
                             pruner=_pruner(startup_trials))


def has_heartbeat(url: str) -> bool:
    """Whether ``make_storage(url)`` tells dead processes' trials from live ones (only then is waiting safe)."""
    return not url.startswith("journal:")


def _count(study: optuna.Study, states: Sequence[optuna.trial.TrialState]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


class TrialBudget:
    """Stop this process once the finished trials plus those other processes are running reach ``n_trials``.

    Counting others' running trials keeps several workers from overshooting the budget together. Without
    heartbeats a RUNNING trial may belong to a process that died long ago, so only finished ones count.
    """

    def __init__(self, n_trials: int, *, count_running: bool) -> None:
        self.n_trials = n_trials
        self.states = FINISHED + ((optuna.trial.TrialState.RUNNING,) if count_running else ())

    def remaining(self, study: optuna.Study) -> int:
        return self.n_trials - _count(study, self.states)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.remaining(study) <= 0:
            study.stop()


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], *, n_trials: int,
               timeout_s: float, callbacks: Sequence[Callable], heartbeat: bool, wait_for_others: bool) -> None:
    """Run trials until ``n_trials`` are finished (complete or pruned) across every process sharing the study.

    A worker stops as soon as nothing is left for it to start. With ``wait_for_others`` (the training that
    owns the study) and a storage with heartbeats (see ``has_heartbeat``), this process returns only once no
    trial is running or queued anywhere: it waits for others' trials, fails those whose heartbeat stopped
    (which queues their retry) and runs queued retries itself, so every trial has ended — and been logged —
    before the best one is refitted. No new trial starts after ``timeout_s``.
    """
    budget = TrialBudget(n_trials, count_running=heartbeat)
    owner = wait_for_others and heartbeat
    waiting, running = (optuna.trial.TrialState.WAITING,), (optuna.trial.TrialState.RUNNING,)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        todo = budget.remaining(study)
        if owner:
            # A retry queued after the budget was met still runs: the dead worker's trial is not dropped.
            todo = max(todo, _count(study, waiting))
        if todo > 0:
            study.optimize(objective, n_trials=todo, timeout=deadline - time.monotonic(),
                           callbacks=[budget, *callbacks], gc_after_trial=False)
            continue
        if not owner or _count(study, running) == 0:
            return
        optuna.storages.fail_stale_trials(study)
        time.sleep(POLL_S)


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample one booster and its own parameters (a conditional space: gblinear has no tree depth)."""
    booster = trial.suggest_categorical("booster", space.booster.choices)
    params: dict[str, Any] = {"booster": booster}
    for name, dim in getattr(space, booster).items():
        if dim.int:
            params[name] = trial.suggest_int(f"{booster}.{name}", int(dim.low), int(dim.high), log=dim.log)
        else:
            params[name] = trial.suggest_float(f"{booster}.{name}", dim.low, dim.high, log=dim.log)
    return params


def from_trial_params(flat: dict[str, Any]) -> dict[str, Any]:
    """Undo the ``booster.name`` prefixes Optuna stores, giving XGBoost parameters."""
    return {k.split(".", 1)[-1]: v for k, v in flat.items()}


def xgb_params(params: dict[str, Any], *, seed: int, nthread: int) -> dict[str, Any]:
    """Full XGBoost training parameters for a sampled set."""
    full = {"objective": "reg:squarederror", "eval_metric": "rmse", "seed": seed, "nthread": nthread,
            "verbosity": 0, **params}
    if params["booster"] == "gbtree":
        full["tree_method"] = "hist"
    else:
        # Coordinate descent with a cyclic order is deterministic, unlike the default parallel "shotgun".
        full.update(updater="coord_descent", feature_selector="cyclic")
    return full


def fit(x: np.ndarray, y: np.ndarray, params: dict[str, Any], *, rounds: int, seed: int) -> xgb.Booster:
    """Fit a booster on all given rows with a fixed number of rounds (one thread, like every CV fold)."""
    dtrain = xgb.DMatrix(x, label=y, nthread=1)
    return xgb.train(xgb_params(params, seed=seed, nthread=1), dtrain, num_boost_round=rounds)


@dataclass(frozen=True)
class Fold:
    fit: xgb.DMatrix
    val: xgb.DMatrix
    y_val: np.ndarray


class Folds:
    """The k CV folds of the training rows as XGBoost matrices, built once and shared by every trial.

    Reusing the matrices also reuses the histogram cuts XGBoost computes on a matrix's first use. A fold is
    only ever trained on by one thread at a time (``cross_validate`` waits for all it started).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, cfg: TrainParams) -> None:
        splits = KFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed).split(x)
        self.folds = tuple(Fold(fit=xgb.DMatrix(x[fit_idx], label=y[fit_idx], nthread=1),
                                val=xgb.DMatrix(x[val_idx], label=y[val_idx], nthread=1), y_val=y[val_idx])
                           for fit_idx, val_idx in splits)

    def __len__(self) -> int:
        return len(self.folds)


def _fit_fold(fold: Fold, full: dict[str, Any], cfg: TrainParams) -> tuple[float, int]:
    """Train on one fold until its validation RMSE has not improved for ``early_stopping_rounds`` rounds.

    The same rule as ``xgb.train(..., early_stopping_rounds=...)`` (strictly lower is better, the score as
    XGBoost reports it), with each round's update and evaluation called straight through XGBoost's C API:
    the Python wrapper re-checks the matrices' feature names twice a round, which cost as much as a round of
    training on these small folds.
    """
    booster = xgb.Booster(full, [fold.fit, fold.val])
    lib, handle, fit = xgb.core._LIB, booster.handle, fold.fit.handle
    evals, names, message = (ctypes.c_void_p * 1)(fold.val.handle.value), (ctypes.c_char_p * 1)(b"val"), \
        ctypes.c_char_p()
    best, best_round = math.nan, 0
    for iteration in range(cfg.max_rounds):
        current = ctypes.c_int(iteration)
        if (lib.XGBoosterUpdateOneIter(handle, current, fit) != 0
                or lib.XGBoosterEvalOneIter(handle, current, evals, names, ctypes.c_uint64(1),
                                            ctypes.byref(message)) != 0):
            raise xgb.core.XGBoostError(lib.XGBGetLastError().decode())
        score = float(message.value.rsplit(b":", 1)[1])  # "[12]\tval-rmse:2.0812..."
        if iteration == 0 or score < best:  # the first round is the best so far, even a NaN (as in xgboost)
            best, best_round = score, iteration
        elif iteration - best_round >= cfg.early_stopping_rounds:
            break
    rounds = best_round + 1
    pred = booster.predict(fold.val, iteration_range=(0, rounds))
    return math.sqrt(float(np.mean((pred - fold.y_val) ** 2))), rounds


def cross_validate(folds: Folds, params: dict[str, Any], cfg: TrainParams,
                   report: Callable[[int, float], None] | None = None) -> CvResult:
    """K-fold CV with early stopping inside each fold, ``cfg.nthread`` folds at a time.

    Each fold trains on one thread, so the scores do not depend on ``nthread``, and folds are reported in
    order: ``report(fold, mean_rmse_so_far)`` after each, so a pruner stops the trial exactly where it would
    have stopped it with the folds run one after another (a fold already started alongside is wasted).
    """
    full = xgb_params(params, seed=cfg.seed, nthread=1)
    scores, rounds = [], []
    with ThreadPoolExecutor(max_workers=cfg.nthread, thread_name_prefix="cv-fold") as pool:
        for start in range(0, len(folds), cfg.nthread):
            wave = [pool.submit(_fit_fold, fold, full, cfg) for fold in folds.folds[start:start + cfg.nthread]]
            for fold, outcome in enumerate((f.result() for f in wave), start=start):
                scores.append(outcome[0])
                rounds.append(outcome[1])
                if report is not None:
                    report(fold, float(np.mean(scores)))
    # The refit sees 1/(k-1) more rows than each fold did, so it gets proportionally more rounds.
    refit_rounds = max(1, round(float(np.mean(rounds)) * cfg.cv_folds / (cfg.cv_folds - 1)))
    return CvResult(rmse=float(np.mean(scores)), rmse_std=float(np.std(scores)), rounds=refit_rounds)
