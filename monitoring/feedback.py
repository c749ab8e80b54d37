"""Owns ``python -m monitoring.feedback --labels FILE`` (``make feedback``): live accuracy once true values arrive.

Joins the labels (see monitoring/labels.py) with the captured predictions of params.yaml's model in the window
(``--since``/``--until``, default: everything captured), and per model version computes the live RMSE, MAE
and R² and compares the RMSE with the version's test RMSE (its ``test_rmse`` registry tag): worse than
``test_rmse * (1 + monitor.feedback.rmse_tolerance)`` is an alarm; fewer than ``monitor.feedback.min_labels``
labels is "not enough labels". Each version gets a run of the monitoring experiment (tagged with model,
version and window) and ``live.*`` tags on its registry entry. Rejected labels are counted by reason, printed
and written to ``rejected_labels.csv``; none is dropped silently.

``--append`` also turns the labelled records into new rows of the DVC-tracked table (monitoring/append.py): the
table is checked before anything is recorded, and one such job runs at a time per table (a second one waits).
Exit codes: 0 live accuracy within tolerance (or not enough labels), 1 a version is worse, 2 error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from core import tracking
from core.cli import UserError
from core.params import Params, load_params, params_option
from monitoring import append, labels, outputs
from monitoring.captures import read_captures
from monitoring.cli import ALARM, OK, CaptureSource, job_errors, run_job
from monitoring.reference import Registry, open_registry
from monitoring.window import Window

OK_STATUS, WORSE, NOT_ENOUGH = "ok", "worse", "not enough labels"
SUMMARY_FILE, REJECTED_FILE = "feedback.json", "rejected_labels.csv"


def accuracy(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """RMSE, MAE and R² (None when the labels do not vary)."""
    error = predicted - actual
    spread = float(np.sum((actual - actual.mean()) ** 2))
    return {"rmse": math.sqrt(float(np.mean(error**2))), "mae": float(np.mean(np.abs(error))),
            "r2": 1 - float(np.sum(error**2)) / spread if spread > 0 else None}


def score_versions(matched: list[tuple[dict[str, Any], float]], registry: Registry, params: Params
                   ) -> dict[str, dict[str, Any]]:
    """Per version: label count, live metrics, its test RMSE and the status."""
    by_version: dict[str, list[tuple[float, float]]] = {}
    for record, actual in matched:
        by_version.setdefault(str(record["model_version"]), []).append((actual, float(record["prediction"])))
    cfg = params.monitor.feedback
    out = {}
    for version, pairs in sorted(by_version.items(), key=lambda item: (len(item[0]), item[0])):
        test_rmse = _test_rmse(registry, version)
        actual, predicted = (np.array(column) for column in zip(*pairs, strict=True))
        live = accuracy(actual, predicted)
        limit = test_rmse * (1 + cfg.rmse_tolerance)
        status = NOT_ENOUGH if len(pairs) < cfg.min_labels else WORSE if live["rmse"] > limit else OK_STATUS
        out[version] = {"labels": len(pairs), **live, "test_rmse": test_rmse, "rmse_limit": limit, "status": status}
    return out


def _test_rmse(registry: Registry, version: str) -> float:
    """The version's ``test_rmse`` tag, a finite positive number (NaN would pass every comparison as "ok").

    Raises:
        UserError: the tag is missing, or not a finite positive number.
    """
    tags = registry.version_tags(version)
    if "test_rmse" not in tags:
        raise UserError(f"version {version} of '{registry.name}' has no test_rmse tag to compare with")
    try:
        value = float(tags["test_rmse"])
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"version {version} of '{registry.name}' has test_rmse {tags['test_rmse']!r}, not a finite "
                        f"positive number to compare with; fix its registry tag")
    return value


def record(registry: Registry, params: Params, window: Window, scores: dict[str, dict[str, Any]],
           joined: labels.Joined, files: list[Path]) -> None:
    """A monitoring run and ``live.*`` registry tags per version."""
    bounds = window.bounds()
    rejected = {f"rejected.{reason.replace(' ', '_')}": n for reason, n in joined.counts().items()}
    for version, score in scores.items():
        metrics = {f"live_{k}": score[k] for k in ("rmse", "mae", "r2") if score[k] is not None}
        run_id = registry.log_run(
            params.monitor.experiment, run_name=f"feedback {registry.name} v{version} {window.label()}",
            tags={"monitor.kind": "feedback", "model.name": registry.name, "model.version": version,
                  "window.since": bounds["since"] or "start", "window.until": bounds["until"] or "now",
                  "status": score["status"]},
            metrics=metrics | {"labels": score["labels"], "test_rmse": score["test_rmse"], **rejected},
            artifacts=files)
        registry.tag_version(version, {"live.rmse": f"{score['rmse']:.6f}", "live.mae": f"{score['mae']:.6f}",
                                       "live.r2": "n/a" if score["r2"] is None else f"{score['r2']:.6f}",
                                       "live.labels": str(score["labels"]), "live.window": window.label(),
                                       "live.status": score["status"], "live.run_id": run_id})


@click.command(help="Join late labels with captured predictions: live accuracy per model version.")
@params_option
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV with request_id, actual and optionally row.")
@click.option("--capture", "source", type=CaptureSource(), default=None,
              help="Capture folder or s3://bucket/prefix (default: params.yaml monitor.capture_dir).")
@click.option("--since", default=None, help="Only predictions from then on (YYYY-MM-DD or ISO 8601 UTC).")
@click.option("--until", default=None, help="Only predictions before then (default: now).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("dist/reports/feedback"),
              show_default=True, help="Folder for feedback.json and rejected_labels.csv.")
@click.option("--append", "do_append", is_flag=True,
              help="Also append the labelled records to the DVC-tracked table and `dvc add` it.")
@job_errors
def cli(params_file: Path, labels_file: Path, source: str | None, since: str | None, until: str | None, out: Path,
        do_append: bool) -> int:
    tracking.quiet_mlflow()
    params = load_params(params_file)
    window = Window.of(since, until, default_days=None)
    given = labels.read_labels(labels_file)
    if not given:  # "0 labels: 0 joined" with exit 0 would pass a CI job on an empty export
        raise UserError(f"{labels_file}: the labels CSV has a header but no labels")
    if not do_append:
        return _feedback(params, window, given, source, out)[0]
    table = _table(params)
    # Checked first: a table that cannot take rows stops the job before the registry or MLflow records anything.
    checked = append.check(table, params.data.target, root=Path.cwd())

    def fits(joined: labels.Joined) -> None:  # after the join, before anything is recorded
        # Not one labelled record fits: the table or the capture has another schema, and exit 0 would pass the job.
        misfit = append.first_misfit(checked, params.data.target, joined.matched)
        if misfit is not None:
            raise UserError(f"none of the {len(joined.matched)} labelled records fits {table} (the first, "
                            f"{misfit[0]}: {misfit[1]}); nothing appended, logged or tagged")

    # Held for the whole job, not only the append: two appends at once would also tag one version at once.
    with append.locked(table):
        code, joined = _feedback(params, window, given, source, out, before_record=fits)
        _append(params, joined)
    return code


def _feedback(params: Params, window: Window, given: list[labels.Label], source: str | None, out: Path, *,
              before_record: Callable[[labels.Joined], None] = lambda joined: None) -> tuple[int, labels.Joined]:
    """Join, score, write the report, log and tag; returns the exit code and the joined labels.
    ``before_record`` may refuse the joined labels (raising) after the report is written, before MLflow."""
    registry = open_registry(params)
    captured = read_captures(source or str(params.monitor.capture_dir), window=window)
    joined = labels.join(given, captured.predictions, captured.refusals, model=params.model.name)
    scores = score_versions(joined.matched, registry, params)
    summary = {"model": params.model.name, "window": window.bounds(), "labels": len(given),
               "matched": len(joined.matched), "rejected": joined.counts(), "versions": scores,
               "unreadable_lines": captured.bad_lines, "duplicate_records": captured.duplicates,
               "damaged_files": captured.damaged_files,
               "first_damaged_file": captured.first_damaged}
    # Both or neither: a feedback.json beside an earlier run's rejected labels would describe other labels.
    with outputs.staged(out, last=SUMMARY_FILE) as folder:
        (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        labels.write_rejected(joined, folder / REJECTED_FILE)
    files = [out / SUMMARY_FILE, out / REJECTED_FILE]
    if not joined.matched:  # the command refused an empty labels file already
        # Every label refused: the file or the window is wrong, and "0 joined" with exit 0 would pass a CI job.
        # The report says which label was refused and why; nothing is logged, tagged or appended.
        why = ", ".join(f"{count} {reason}" for reason, count in joined.counts().items() if count)
        raise UserError(f"none of the {len(given)} labels joined a captured prediction ({why}); see {files[1]} "
                        f"(wrong labels file, --capture or window?)")
    before_record(joined)
    record(registry, params, window, scores, joined, files)
    click.echo(f"{len(given)} labels: {len(joined.matched)} joined, {len(joined.rejected)} rejected")
    if captured.bad_lines or captured.damaged_files:
        first = f" (the first: {captured.first_damaged})" if captured.first_damaged else ""
        click.echo(f"  capture: {captured.bad_lines} unreadable line(s) skipped, {captured.damaged_files} damaged "
                   f"file(s){first}")
    for reason, count in joined.counts().items():
        if count:
            click.echo(f"  rejected {count}: {reason} (see {files[1]})")
    for version, s in scores.items():
        r2 = "n/a" if s["r2"] is None else f"{s['r2']:.3f}"
        click.echo(f"version {version}: {s['labels']} labels, live RMSE {s['rmse']:.3f} (test {s['test_rmse']:.3f}, "
                   f"limit {s['rmse_limit']:.3f}), MAE {s['mae']:.3f}, R² {r2}: {s['status']}")
    return ALARM if any(s["status"] == WORSE for s in scores.values()) else OK, joined


def _table(params: Params) -> Path:
    return params.data.path if params.data.path.is_absolute() else Path.cwd() / params.data.path


def _append(params: Params, joined: labels.Joined) -> None:
    table = _table(params)
    done = append.append(table, params.data.target, joined.matched, root=Path.cwd())
    for key, reason in done.refused:
        click.echo(f"  not appended {key}: {reason}")
    click.echo(f"appended {done.rows} new rows to {table} ({done.already} already there, "
               f"{len(done.refused)} not fitting the table)")
    if done.rows and done.dvc_file is not None:
        click.echo(f"next: git add {done.dvc_file.name} && git commit -m 'data: {done.rows} labelled live records' "
                   f"&& dvc push\n      (on main, the train-deploy workflow then retrains, gates and releases; "
                   f"locally: dvc repro)")


def main(argv: list[str] | None = None) -> int:
    """Run the feedback job; returns 0 (within tolerance), 1 (a version is worse) or 2 (error)."""
    return run_job(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
