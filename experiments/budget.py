"""Owns the trial budget of a study that several processes may search: ``train.n_trials`` trials between them.

Every process checks the budget before it starts a trial, but two processes finishing at the same moment can
both see one trial left. The storage settles it: it numbers trials in the order they are created (Optuna's
RDB storage creates a trial holding a row lock on its study, ``RDBStorage._create_new_trial``; the journal
replays one file in order), so the budget is the first ``n_trials`` trials by number that have not failed,
and a trial that finds that many before it ends at once, before it trains anything (``OverBudget``). It stays in the study as a failed trial
with the ``over_budget`` attribute; no MLflow run is logged for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import optuna

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
POLL_S = 1.0
OVER_BUDGET_ATTR = "over_budget"
_WAITING, _RUNNING = (optuna.trial.TrialState.WAITING,), (optuna.trial.TrialState.RUNNING,)


class OverBudget(Exception):
    """A trial created after the budget was already taken by the trials before it; carries its number and the
    Optuna log level to restore (Optuna logs a failed trial as two warnings, one with a traceback: an over-budget
    trial is expected, so they are silenced while it ends and ``run_trials`` gives it one line instead)."""

    def __init__(self, number: int, verbosity: int) -> None:
        super().__init__(number)
        self.number, self.verbosity = number, verbosity


def has_heartbeat(url: str) -> bool:
    """Whether the storage ``url`` names tells dead processes' trials from live ones (only then is waiting safe)."""
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
        self.states = FINISHED + (_RUNNING if count_running else ())
        self._ahead_states = frozenset(self.states + _WAITING)

    def remaining(self, study: optuna.Study) -> int:
        return self.n_trials - _count(study, self.states)

    def ahead_of(self, trial: optuna.Trial) -> int:
        """How many trials that count towards the budget were created before ``trial`` (queued retries included)."""
        return sum(t.number < trial.number and t.state in self._ahead_states
                   for t in trial.study.get_trials(deepcopy=False))

    def within(self, objective: Callable[[optuna.Trial], float]) -> Callable[[optuna.Trial], float]:
        """``objective``, ended before it starts when the trials created before this one fill the budget."""
        def run(trial: optuna.Trial) -> float:
            if self.ahead_of(trial) >= self.n_trials:
                trial.set_user_attr(OVER_BUDGET_ATTR, True)
                verbosity = optuna.logging.get_verbosity()
                optuna.logging.set_verbosity(optuna.logging.ERROR)
                raise OverBudget(trial.number, verbosity)
            return objective(trial)
        return run

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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        todo = budget.remaining(study)
        if owner:
            # A retry queued after the budget was met still runs: the dead worker's trial is not dropped.
            todo = max(todo, _count(study, _WAITING))
        if todo > 0:
            # The budget is checked last, just before Optuna starts the next trial: checked first, it would be
            # read before the other callbacks log the trial to MLflow (tens of ms), a window in which another
            # worker finishing at the same moment also sees one trial left, and both start one.
            try:
                study.optimize(budget.within(objective), n_trials=todo, timeout=deadline - time.monotonic(),
                               callbacks=[*callbacks, budget], gc_after_trial=False)
            except OverBudget as over:
                optuna.logging.set_verbosity(over.verbosity)
                print(f"trial {over.number} not run: another process started the last trial of the "
                      f"{n_trials} at the same moment", flush=True)
                if not owner:
                    return
                time.sleep(POLL_S)  # the owner waits for the others' trials
            continue
        if not owner or _count(study, _RUNNING) == 0:
            return
        optuna.storages.fail_stale_trials(study)
        time.sleep(POLL_S)
