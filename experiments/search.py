"""Owns the Optuna search: the study (its name and storage), the sampled parameters, the objective.

What the train stage and a worker (``experiments.worker``) share: both search the same study through these.
Several processes may run trials of one study through a shared RDB storage (PostgreSQL for a team). Each
running trial then sends a heartbeat; a trial whose process died (no heartbeat for ``GRACE_S``) is marked
failed by whichever process looks next and re-queued once with the same parameters, so a killed worker
loses at most the trial it was running.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from core import liveness
from core.cli import UserError
from core.files import is_special
from core.params import Params, SearchSpace
from core.tracking import shown_uri
from experiments import cv

# A trial sends a heartbeat every HEARTBEAT_S; after GRACE_S without one its process is taken for dead. The
# grace is several heartbeats long so that a busy but alive worker is never failed; a trial here takes
# seconds, so losing GRACE_S on a crash costs little. A trial killed twice in a row is not retried again.
HEARTBEAT_S = 5
GRACE_S = 20
MAX_RETRY = 2
# Study attributes the train stage sets and workers read: which MLflow run to log under, and whether a
# worker's data and settings match; trial attribute naming the machine and process that ran it.
PARENT_RUN_ATTR = "mlflow_parent_run_id"
DIGEST_ATTR = "search_digest"
WORKER_ATTR = "worker"


def worker_of(trial: optuna.trial.FrozenTrial) -> liveness.Owner | None:
    """The process that ran a trial (``host:pid:start``; ``host:pid`` in studies from before the start time was
    kept, where a reused pid reads as that process), or None if it never named one."""
    text = trial.user_attrs.get(WORKER_ATTR)
    if text is None:
        return None
    host, _, pid = str(text).rpartition(":")
    return liveness.parse(str(text)) or (liveness.Owner(host, int(pid), "") if host and pid.isdigit() else None)


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """``journal:PATH`` is Optuna's journal file (one person, several local processes); anything else is a
    SQLAlchemy URL of an RDB storage with heartbeats, e.g. ``postgresql+psycopg://...`` for a team.

    Raises:
        UserError: the journal's folder cannot be used, or the URL is malformed, its driver is missing or the
            database cannot be reached (the password is never shown).
    """
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        if is_special(path):  # a FIFO: Optuna's open for appending would wait for a reader for ever
            raise UserError(f"Optuna storage {url}: {path} is not a regular file; name a journal file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(str(path))
        except OSError as err:
            raise UserError(f"Optuna storage {url}: cannot use {path} ({err.strerror or err})") from None
        if not _journal_or_empty(path):  # Optuna would append its lines to it: never to a file of someone else's
            raise UserError(f"Optuna storage {url}: {path} is not an Optuna journal (its first line is not one of "
                            f"Optuna's); name another file")
        with unreadable_journal(url):  # Optuna replays the whole journal here
            return optuna.storages.JournalStorage(backend)
    import sqlalchemy.exc  # the RDB storage imports SQLAlchemy anyway; a journal never does

    # pre_ping: a worker outlives a database restart or a dropped idle connection instead of failing a trial.
    engine = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            # Heartbeats have been "experimental" since Optuna 2.8; the warning would print on every worker start.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise UserError(f"Optuna storage {shown_uri(url)}: {reason}") from None


def _journal_or_empty(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except OSError:
        return True  # not there yet (or a folder, which the backend names)
    try:
        return not first or isinstance(line := json.loads(first), dict) and "op_code" in line
    except ValueError:  # not JSON
        return False


@contextlib.contextmanager
def unreadable_journal(what: str) -> Iterator[None]:
    """Name a journal Optuna cannot replay (a line that is not JSON, or JSON that is not Optuna's) in one line.

    Optuna skips a last line it cannot read (a write cut short) but fails on one with lines after it, such as
    the line the next write appends: so a damaged journal fails on opening, or on the first write after.
    """
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
        detail = str(err).splitlines()[0] if str(err) else repr(err)
        raise UserError(f"Optuna storage {what}: not a readable Optuna journal ({type(err).__name__}: {detail}); "
                        f"move the file aside to start a new one") from None


def _sampler(seed: int | None, startup_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(startup_trials, 1))


def _pruner(startup_trials: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1)


def make_study(*, name: str, storage: str | optuna.storages.BaseStorage, seed: int,
               startup_trials: int) -> optuna.Study:
    """Create or join the study ``name``: a seeded TPE sampler and a median pruner over CV folds.

    ``storage`` is a URL (see ``make_storage``) or a storage already made from one.
    """
    store = make_storage(storage) if isinstance(storage, str) else storage
    what = storage if isinstance(storage, str) else f"of study {name}"
    guard = unreadable_journal(what) if isinstance(store, optuna.storages.JournalStorage) else contextlib.nullcontext()
    with guard:
        return optuna.create_study(study_name=name, storage=store, direction="minimize",
                                   sampler=_sampler(seed, startup_trials), pruner=_pruner(startup_trials),
                                   load_if_exists=True)


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


def storage_url(params: Params, storage: str | None = None) -> str:
    """``--storage``, else ``$OPTUNA_STORAGE`` (a team's shared database), else ``train.storage``.

    Raises:
        UserError: the URL has surrounding spaces or a control character (a secret or env file's trailing newline:
            a journal named ``optuna.journal\\n`` was made beside the real one, and the study never resumed).
    """
    url = storage or os.environ.get("OPTUNA_STORAGE") or params.train.storage
    if url != url.strip() or any(ord(c) < 32 or ord(c) == 127 for c in url):
        where = "--storage" if storage else "OPTUNA_STORAGE" if os.environ.get("OPTUNA_STORAGE") else "train.storage"
        raise UserError(f"{where} {shown_uri(url)!r} has surrounding spaces or a control character (a trailing "
                        f"newline?)")
    return url


def _search_settings(params: Params) -> str:
    return json.dumps({"data": params.data.model_dump(mode="json"),
                       "train": params.train.model_dump(mode="json", exclude={"storage", "timeout_s"})},
                      sort_keys=True)


def search_digest(params: Params, data_hash: str) -> str:
    """A digest of everything that makes two trials comparable: the data and the search settings."""
    return hashlib.sha256(f"{data_hash}:{_search_settings(params)}".encode()).hexdigest()[:10]


def study_name(params: Params, data_hash: str) -> str:
    """Same data and same search settings → same study, so an interrupted training resumes it."""
    digest = hashlib.sha256(_search_settings(params).encode()).hexdigest()[:10]
    return f"{params.model.name}-{data_hash[:10]}-{digest}"


class Progress:
    """One line on a terminal (rewritten in place), or a line per trial in a log."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = sys.stdout.isatty()

    def update(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # One read of the trials, not three: with a shared database every read is a round trip per trial.
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state.is_finished() for t in trials)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if complete:
            top = min(complete, key=lambda t: t.value)
            best = f"best CV RMSE {top.value:.4f} (trial {top.number})"
        else:
            best = "no complete trial yet"
        line = f"trial {min(done, self.total)}/{self.total}  {trial.state.name.lower():8s}  {best}"
        print(f"\r{line}" if self.tty else line, end="" if self.tty else "\n", flush=True)

    def close(self) -> None:
        if self.tty:
            print(flush=True)


def make_objective(x: np.ndarray, y: np.ndarray, params: Params):
    """The Optuna objective: cross-validated RMSE of one sampled parameter set, reported fold by fold."""
    cfg = params.train
    folds = cv.Folds(x, y, cfg)

    def objective(trial: optuna.Trial) -> float:
        # Which machine and process ran a trial, for a team reading a shared study, and for a resumed training
        # closing the trials of a process that died (set first: sampling may take a while).
        trial.set_user_attr(WORKER_ATTR, str(liveness.me()))
        sampled = suggest(trial, cfg.search_space)

        def report(fold: int, rmse: float) -> None:
            trial.report(rmse, fold)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = cv.cross_validate(folds, sampled, cfg, report)
        trial.set_user_attr("cv_rmse", result.rmse)
        trial.set_user_attr("cv_rmse_std", result.rmse_std)
        trial.set_user_attr("rounds", float(result.rounds))
        return result.rmse
    return objective
