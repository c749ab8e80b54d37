"""Owns moving the production alias: promotion through the quality gate, rollback, and the history view.

Usage: ``python -m registry.promote [--version N] [--dry-run] [--force] [--reason TEXT] [--no-export]``,
``--rollback`` and ``--history``. Without ``--version`` the candidate is the registered version trained on
the current data (its ``data_hash`` tag equals the DVC hash of data/) with the lowest ``test_rmse``, save a
version a rollback took production from or whose run is withdrawn (``registry.candidate``).

Only registry aliases move (``registry.alias`` and ``registry.previous_alias`` in params.yaml), never the
deprecated stages. Everything that can fail (artifacts, scoring) is checked before the first write, so a
refused or failed promotion leaves the aliases as they were. The gate's decision and scores are tagged on
the candidate (``gate.*``); each promotion and rollback is appended to the history, kept as registered-model
tags ``history.NNNNNN`` (see registry/history.py).

A change holds the promotion lock and writes its plan on it before the first alias moves
(``registry.lock``); a promotion killed part-way is finished, or undone, by the next one to take the lock
(``registry.recovery``), which says so before doing its own work.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click
from mlflow.entities.model_registry import ModelVersion

from core import tracking
from core.cli import MODEL_VERSION, UserError, run_cli
from core.lineage import dvc_data_hash
from core.params import Params, load_params, params_option
from registry import gate, history, recovery
from registry.candidate import pick_candidate
from registry.export import check_destination, exported_version, pack_stamped, stamp
from registry.lock import promotion_lock
from registry.versions import Registry, fetch_model, mlflow_errors, open_registry, same_version
from serving.bundle import sha256


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6f}"


def _record_gate(registry: Registry, mv: ModelVersion, decision: str, verdict: gate.Verdict,
                 data_hash: str, at: str) -> None:
    tags = {"gate.decision": decision, "gate.candidate_rmse": _fmt(verdict.candidate_rmse),
            "gate.production_rmse": _fmt(verdict.production_rmse), "gate.data_hash": data_hash, "gate.at": at}
    with mlflow_errors(f"tagging version {mv.version}"):
        for key, value in tags.items():
            registry.client.set_model_version_tag(registry.name, mv.version, key, value)


def _move(registry: Registry, params: Params, to: ModelVersion, replaced: ModelVersion | None) -> None:
    # `previous` first: if the second call fails, production still points at a working version.
    with mlflow_errors(f"moving the aliases of '{registry.name}'"):
        if replaced is not None:
            registry.client.set_registered_model_alias(registry.name, params.registry.previous_alias,
                                                       replaced.version)
        registry.client.set_registered_model_alias(registry.name, params.registry.alias, to.version)


Journal = Callable[[dict[str, Any]], None]


def _plan(registry: Registry, params: Params, event: dict[str, Any], export: bool) -> dict[str, Any]:
    """What a change is about to do, written on the lock first so that a killed change can be finished."""
    previous = registry.by_alias(params.registry.previous_alias)
    return {"id": event["promotion_id"], "action": event["action"], "alias": params.registry.alias,
            "previous_alias": params.registry.previous_alias, "to": event["to"], "from": event["from"],
            "previous_before": str(previous.version) if previous is not None else None, "event": event,
            "export": str(params.export.path) if export else None}


def _event(action: str, replaced: ModelVersion | None, to: ModelVersion, reason: str | None,
           verdict: gate.Verdict | None, decision: str | None, at: str) -> dict[str, Any]:
    return {"who": history.who(), "when": at, "action": action, "promotion_id": uuid.uuid4().hex[:12],
            "from": str(replaced.version) if replaced is not None else None, "to": str(to.version), "reason": reason,
            "decision": decision, "candidate_rmse": verdict.candidate_rmse if verdict else None,
            "production_rmse": verdict.production_rmse if verdict else None}


def _export(mv: ModelVersion, model_dir: Path, out: Path) -> None:
    """Pack a stamped model folder (``stamp`` read its lineage before anything moved) as the export."""
    try:
        path = pack_stamped(mv, model_dir, out)
    except UserError as err:
        raise UserError(f"version {mv.version} is now production, but the export failed: {err}; "
                        f"retry with python -m registry.export") from None
    click.echo(f"exported version {mv.version} to {path} (sha256 {sha256(path)})")


def _score_production(registry: Registry, current: ModelVersion, tests: gate.TestSet, workdir: Path) -> float:
    try:
        _, predictor = fetch_model(registry, current, workdir)
        return gate.score(predictor, tests, f"production version {current.version}")
    except UserError as err:
        raise UserError(f"{err}; the gate cannot compare against production (use --force to skip it)") from None


def promote(params: Params, registry: Registry, version: int | None, *, force: bool, dry_run: bool,
            reason: str | None, export: bool, journal: Journal | None = None,
            settle: Callable[[], None] | None = None) -> None:
    """Gate a candidate against production and, if it passes, move the aliases and export it."""
    data_hash = dvc_data_hash(params.data.path)
    candidate = pick_candidate(registry, version, data_hash)
    current = registry.by_alias(params.registry.alias)
    if current is not None and same_version(current, candidate):
        exported = exported_version(params.export.path, registry.name) if export else str(candidate.version)
        if exported == str(candidate.version):
            click.echo(f"version {candidate.version} already holds @{params.registry.alias}; nothing to do")
            return
        check_destination(params.export.path)  # the tracking store, params.yaml, a FIFO: refused here too
        click.echo(f"version {candidate.version} already holds @{params.registry.alias}; nothing to do but the "
                   f"export ({params.export.path} holds {f'version {exported}' if exported else 'no bundle of it'})")
        if dry_run:
            click.echo(f"dry run: would export version {candidate.version} to {params.export.path}; nothing changed")
            return
        with tempfile.TemporaryDirectory(prefix="registry-promote-") as tmp:
            model_dir, _ = fetch_model(registry, candidate, Path(tmp))
            stamp(registry, candidate, model_dir)
            _export(candidate, model_dir, params.export.path)
        return
    with tempfile.TemporaryDirectory(prefix="registry-promote-") as tmp:
        model_dir, predictor = fetch_model(registry, candidate, Path(tmp) / "candidate")
        if export:
            stamp(registry, candidate, model_dir)  # unreadable lineage refuses here, before any alias moves
        tests = gate.current_test_set(params)
        candidate_rmse = gate.score(predictor, tests, f"version {candidate.version}")
        production_rmse = None
        if current is not None and not force:
            production_rmse = _score_production(registry, current, tests, Path(tmp) / "production")
        verdict = gate.decide(candidate_rmse, production_rmse, params.registry.gate_tolerance)
        decision = "forced" if force else "accepted" if verdict.accepted else "refused"
        summary = _summary(candidate, current, verdict, decision)
        if decision == "refused":
            refusal = (f"gate refused version {candidate.version}: RMSE {candidate_rmse:.4f} vs production "
                       f"version {current.version} RMSE {production_rmse:.4f} + tolerance "
                       f"{verdict.tolerance:.4f}; use --force to override")
            if not dry_run:
                _record_gate(registry, candidate, decision, verdict, data_hash, history.now())
            raise UserError(f"dry run: {refusal}" if dry_run else refusal)
        click.echo(summary)
        if dry_run:
            click.echo(f"dry run: would move @{params.registry.alias} to version {candidate.version}"
                       + (f" and @{params.registry.previous_alias} to version {current.version}" if current else "")
                       + "; nothing changed")
            return
        if export:
            check_destination(params.export.path)  # before the first write, not after the aliases moved
        at = history.now()
        event = _event("promote", current, candidate, reason, verdict, decision, at)
        if journal is not None:
            journal(_plan(registry, params, event, export))
        _record_gate(registry, candidate, decision, verdict, data_hash, at)
        _move(registry, params, candidate, current)
        history.append(registry, event)
        if settle is not None:
            settle()
        click.echo(f"promoted {registry.name} version {candidate.version} to @{params.registry.alias}"
                   + (f" (version {current.version} is now @{params.registry.previous_alias})" if current else ""))
        if export:
            _export(candidate, model_dir, params.export.path)


def _summary(candidate: ModelVersion, current: ModelVersion | None, verdict: gate.Verdict, decision: str) -> str:
    if decision == "forced":
        return f"gate skipped (--force): version {candidate.version} RMSE {verdict.candidate_rmse:.4f}"
    if current is None:
        return f"gate: no production version yet; version {candidate.version} RMSE {verdict.candidate_rmse:.4f}"
    return (f"gate {decision}: version {candidate.version} RMSE {verdict.candidate_rmse:.4f} vs production "
            f"version {current.version} RMSE {verdict.production_rmse:.4f} (tolerance {verdict.tolerance:.4f})")


def rollback(params: Params, registry: Registry, *, dry_run: bool, reason: str | None, export: bool,
             journal: Journal | None = None, settle: Callable[[], None] | None = None) -> None:
    """Give production back to the version holding `previous`; the replaced version becomes `previous`."""
    alias, previous_alias = params.registry.alias, params.registry.previous_alias
    current = registry.by_alias(alias)
    if current is None:
        raise UserError(f"model '{registry.name}' has no '{alias}' alias yet; nothing to roll back")
    target = registry.by_alias(previous_alias)
    if target is None or same_version(target, current):
        raise UserError(f"model '{registry.name}' has no '{previous_alias}' version to roll back to")
    with tempfile.TemporaryDirectory(prefix="registry-rollback-") as tmp:
        model_dir, predictor = fetch_model(registry, target, Path(tmp) / "target")
        if export:
            stamp(registry, target, model_dir)
        # No gate (a rollback is an emergency): the history records both scores on today's data where they can be
        # taken; data that is missing or that a version cannot score is a note, never a reason to refuse.
        target_rmse = current_rmse = None
        try:
            tests = gate.current_test_set(params)
            target_rmse = gate.score(predictor, tests, f"version {target.version}")
            current_rmse = _score_production(registry, current, tests, Path(tmp) / "production")
        except UserError as err:
            click.echo(f"note: not scored on today's data ({err})", err=True)
        scores = gate.Verdict(accepted=True, candidate_rmse=target_rmse, production_rmse=current_rmse,
                              tolerance=params.registry.gate_tolerance)
        if dry_run:
            click.echo(f"dry run: would move @{alias} from version {current.version} to version {target.version} "
                       f"and @{previous_alias} to version {current.version}; nothing changed")
            return
        if export:
            check_destination(params.export.path)
        event = _event("rollback", current, target, reason, scores, "rollback", history.now())
        if journal is not None:
            journal(_plan(registry, params, event, export))
        _move(registry, params, target, current)
        history.append(registry, event)
        if settle is not None:
            settle()
        click.echo(f"rolled back {registry.name}: version {target.version} holds @{alias}, "
                   f"version {current.version} holds @{previous_alias}")
        if export:
            _export(target, model_dir, params.export.path)


def _check_conflicts(**flags: bool) -> None:
    chosen = {name for name, on in flags.items() if on}
    for mode, excluded in (("--history", {"--version", "--force", "--rollback", "--dry-run", "--reason"}),
                           ("--rollback", {"--version", "--force"})):
        if mode in chosen and chosen & excluded:
            raise click.UsageError(f"{mode} cannot be combined with {', '.join(sorted(chosen & excluded))}")


@click.command(help="Promote a registered version to production through the quality gate, roll back, or "
                    "show the promotion history.")
@params_option
@click.option("--version", "version", type=MODEL_VERSION, default=None,
              help="Version to promote (default: best version trained on the current data).")
@click.option("--dry-run", is_flag=True, help="Score and print what would happen; change nothing.")
@click.option("--force", is_flag=True, help="Promote even if the gate would refuse.")
@click.option("--rollback", "do_rollback", is_flag=True, help="Move production back to the previous version.")
@click.option("--history", "show_history", is_flag=True, help="Print every promotion and rollback.")
@click.option("--reason", default=None, callback=lambda _ctx, _param, value: history.check_reason(value),
              help="Why; recorded in the history (one line, at most 1,000 characters).")
@click.option("--no-export", is_flag=True, help="Do not write the model tarball after the change.")
def cli(params_file: Path, version: int | None, dry_run: bool, force: bool, do_rollback: bool,
        show_history: bool, reason: str | None, no_export: bool) -> None:
    _check_conflicts(**{"--version": version is not None, "--dry-run": dry_run, "--force": force,
                        "--rollback": do_rollback, "--history": show_history, "--reason": reason is not None})
    tracking.quiet_mlflow()
    params = load_params(params_file)
    registry = open_registry(params)
    if show_history:
        click.echo(history.format_table(history.read(registry)))
        return
    # A dry run changes nothing, so it needs no lock; a real change holds it from reading production to the
    # last history entry, so two concurrent promotions are serialised, never interleaved.
    with nullcontext() if dry_run else promotion_lock(registry) as lock:
        if lock is not None and lock.abandoned_by:
            click.echo(recovery.finish(registry, lock.abandoned, lock.abandoned_by) if lock.abandoned else
                       f"the promotion lock was held by {lock.abandoned_by}, which died before changing anything")
            lock.done()
        journal, settle = (lock.record, lock.done) if lock is not None else (None, None)
        if do_rollback:
            rollback(params, registry, dry_run=dry_run, reason=reason, export=not no_export, journal=journal,
                     settle=settle)
        else:
            promote(params, registry, version, force=force, dry_run=dry_run, reason=reason, export=not no_export,
                    journal=journal, settle=settle)


def main(argv: list[str] | None = None) -> int:
    """Run the promote command and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
