"""Owns ``python -m monitoring.drift`` (``make drift``): a window of captured traffic against its version's profile.

Reads the capture records of params.yaml's model (``--capture``: a folder, default ``monitor.capture_dir``, or
``s3://bucket/prefix``) between ``--since`` and ``--until`` (default: the last ``--days`` days), for one model
version (``--version``, default the version that answered most of the window's records), and compares every
feature and the prediction with that version's reference profile (from the registry, or ``--profile``: a
``profile.json``, model directory or ``model.tar.gz``); see monitoring/analysis.py for the verdict.

Writes ``report.html``, ``drift.png`` and ``summary.json`` into ``--out`` (all of them or none: monitoring/outputs.py),
and logs a run of the monitoring experiment (params.yaml ``monitor.experiment``) tagged with the model, version and
window, with the three files as artifacts (``--no-tracking`` skips it; then ``--profile`` is required). Exit codes:
0 no drift or not enough data, 1 drift, 2 error.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from core import tracking
from core.cli import MODEL_VERSION, FiniteRange, UserError
from core.params import load_params, params_option
from monitoring import analysis, outputs, report
from monitoring.captures import read_captures
from monitoring.cli import ALARM, OK, CaptureSource, job_errors, run_job
from monitoring.reference import open_registry, profile_from_path
from monitoring.window import Window

SUMMARY_FILE, REPORT_FILE, FIGURE_FILE = "summary.json", "report.html", "drift.png"


def busiest_version(records: list[dict[str, Any]]) -> str | None:
    """The version that answered most records (the highest number on a tie), or None without records."""
    counts = Counter(str(r.get("model_version")) for r in records)
    if not counts:
        return None
    return max(counts, key=lambda v: (counts[v], _number(v), v))


def _number(version: str) -> int:
    """A version's number for a tie, -1 unless plain ASCII digits of a size a registry gives (a capture line
    may say "²", which isdigit() accepts and int() refuses, or 5000 digits, which int() refuses too)."""
    return int(version) if len(version) <= 18 and version.isascii() and version.isdigit() else -1


def check_profile_matches(profile_path: Path | None, metadata: dict[str, Any], name: str, version: str | None) -> None:
    """Refuse a ``--profile`` bundle of another model, or of another version than ``--version``.

    Raises:
        UserError: the bundle's metadata names another model or version.
    """
    if metadata.get("registered_name") not in (None, name):
        raise UserError(f"{profile_path} is a model of '{metadata['registered_name']}', not '{name}'")
    if version is not None and metadata.get("version") is not None and str(metadata["version"]) != version:
        raise UserError(f"{profile_path} is version {metadata['version']} of '{name}', not version {version}: "
                        f"its profile cannot judge version {version}'s traffic")


def check_features_captured(summary: dict[str, Any], version: str) -> None:
    """Refuse a window none of whose records holds a profiled feature: another schema, never "no drift".

    Raises:
        UserError: every feature of the profile is missing from every record.
    """
    features = summary["features"]
    if summary["records"] and features and all(f["status"] == analysis.NOT_CAPTURED for f in features.values()):
        raise UserError(f"none of the profile's {len(features)} features is in the {summary['records']} records "
                        f"of version {version}: the captures hold another schema than the profile's")


def write_summary(summary: dict[str, Any], folder: Path) -> Path:
    """summary.json in ``folder`` (what the workflow puts into its job summary).

    Raises:
        OSError: it cannot be written.
    """
    data = folder / SUMMARY_FILE
    data.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return data


def write_outputs(summary: dict[str, Any], out: Path) -> list[Path]:
    """report.html, drift.png and summary.json in ``out``, replacing an earlier window's only once all are written."""
    with outputs.staged(out, last=SUMMARY_FILE) as folder:
        try:
            png = report.figure(summary, folder / FIGURE_FILE)
            report.write_html(summary, png, folder / REPORT_FILE)
        except OSError as err:
            raise UserError(f"cannot write the report into {out}: {err.strerror or err}") from None
        write_summary(summary, folder)
    return [out / REPORT_FILE, out / FIGURE_FILE, out / SUMMARY_FILE]


def run_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """What the MLflow run records as metrics: sizes, shares and every column's PSI and distance."""
    metrics = {"records": summary["records"], "requests": summary["requests"],
               "refused_share": summary["refused_share"], "drifted_features": len(summary["drifted_features"]),
               "drift": float(summary["verdict"] == analysis.DRIFT)}
    for name, result in [*summary["features"].items(), ("prediction", summary["prediction"])]:
        for key in ("psi", "wasserstein", "jensen_shannon"):
            if result.get(key) is not None:
                metrics[_metric_name(f"{key}.{name}", metrics)] = result[key]
    return metrics


def _metric_name(wanted: str, taken: dict[str, float]) -> str:
    """``wanted`` with what MLflow refuses in a metric name made ``_`` (a column "Attendance (%)" trains, and
    then failed every drift run), numbered when that makes it another column's name."""
    name = re.sub(r"[^\w.\- ]", "_", wanted)
    return next(n for n in (name, *(f"{name}_{i}" for i in range(2, len(taken) + 3))) if n not in taken)


@click.command(help="Compare a window of captured traffic with its model version's reference profile.")
@params_option
@click.option("--capture", "source", type=CaptureSource(), default=None,
              help="Capture folder or s3://bucket/prefix (default: params.yaml monitor.capture_dir).")
@click.option("--since", default=None, help="Window start, YYYY-MM-DD or ISO 8601 UTC (default: --days before --until).")
@click.option("--until", default=None, help="Window end, exclusive (default: now).")
@click.option("--days", type=FiniteRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Window length, back from --until (not with --since).")
@click.option("--version", type=MODEL_VERSION, default=None,
              callback=lambda _ctx, _param, v: None if v is None else str(v),  # captures name versions as text
              help="Model version (default: the one that answered most records).")
@click.option("--profile", "profile_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="profile.json, model directory or model.tar.gz to compare with, instead of the registry's.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("dist/reports/drift"),
              show_default=True, help="Folder for report.html, drift.png and summary.json.")
@click.option("--no-tracking", is_flag=True, help="Log no MLflow run (needs --profile).")
@job_errors
def cli(params_file: Path, source: str | None, since: str | None, until: str | None, days: float,
        version: str | None, profile_path: Path | None, out: Path, no_tracking: bool) -> int:
    tracking.quiet_mlflow()
    params = load_params(params_file)
    if no_tracking and profile_path is None:
        raise UserError("--no-tracking needs --profile: without the registry there is no reference profile")
    if since and click.get_current_context().get_parameter_source("days") is not ParameterSource.DEFAULT:
        # Ignored, "--since 2026-11-01 --days 7" read every day from then to now as if it were the week asked for.
        raise UserError(f"--days {days:g} and --since {since} both set where the window starts; give --since with "
                        f"--until, or --days alone (counted back from --until)")
    window = Window.of(since, until, default_days=days)
    source = source or str(params.monitor.capture_dir)
    profile, metadata = profile_from_path(profile_path) if profile_path else (None, {})
    check_profile_matches(profile_path, metadata, params.model.name, version)
    captured = read_captures(source, window=window, model=params.model.name)
    version = str(version or metadata.get("version") or busiest_version(captured.predictions) or "")
    registry = None if no_tracking else open_registry(params, must_exist=profile is None)
    records = [r for r in captured.predictions if str(r.get("model_version")) == version]
    context = {"model": {"name": params.model.name, "version": version or None}, "window": window.bounds(),
               "source": source, "files": captured.files, "unreadable_lines": captured.bad_lines,
               "duplicate_records": captured.duplicates,
               "damaged_files": captured.damaged_files, "first_damaged_file": captured.first_damaged}
    if not version:
        # Nothing answered in the window, so there is no version (and no profile) to compare with.
        summary = context | {"verdict": analysis.NOT_ENOUGH, "records": 0, "refused_requests": len(captured.refusals),
                             "alarms": []}
        # An earlier window's report must not stand beside this summary.
        with outputs.staged(out, last=SUMMARY_FILE, stale=(REPORT_FILE, FIGURE_FILE)) as folder:
            write_summary(summary, folder)
        click.echo(f"{params.model.name}: no predicted records in {window.label()} at {source}: not enough data")
        _echo_skipped(summary)
        return OK
    if profile is None:
        profile = registry.profile(version)
    answered = len({r.get("request_id") for r in captured.predictions})
    summary = analysis.analyse(profile, records, captured.refusals, params.monitor.drift, answered=answered) | context
    check_features_captured(summary, version)
    files = write_outputs(summary, out)
    if registry is not None:
        run_id = registry.log_run(
            params.monitor.experiment, run_name=f"drift {params.model.name} v{version} {window.label()}",
            tags={"monitor.kind": "drift", "model.name": params.model.name, "model.version": version,
                  "window.since": summary["window"]["since"] or "start",
                  "window.until": summary["window"]["until"] or "now", "verdict": summary["verdict"]},
            metrics=run_metrics(summary), artifacts=files)
        click.echo(f"logged run {run_id} to experiment '{params.monitor.experiment}'")
    _echo(summary, out)
    return ALARM if summary["verdict"] == analysis.DRIFT else OK


def _echo(summary: dict[str, Any], out: Path) -> None:
    model = summary["model"]
    window = f"{summary['window']['since'] or 'start'}..{summary['window']['until'] or 'now'}"
    click.echo(f"{model['name']} version {model['version']}, {window}: "
               f"{summary['records']} records, {summary['refused_requests']} refused requests: {summary['verdict']}")
    for alarm in summary["alarms"]:
        click.echo(f"  {alarm}")
    _echo_skipped(summary)
    click.echo(f"report: {out / REPORT_FILE}")


def _echo_skipped(summary: dict[str, Any]) -> None:
    if summary["unreadable_lines"]:
        click.echo(f"  {summary['unreadable_lines']} unreadable capture line(s) skipped")
    if summary["duplicate_records"]:
        click.echo(f"  {summary['duplicate_records']} capture record(s) delivered twice, counted once")
    if summary["damaged_files"]:
        click.echo(f"  {summary['damaged_files']} capture file(s) cut off or corrupt (the first: "
                   f"{summary['first_damaged_file']}): records after the damage are lost")


def main(argv: list[str] | None = None) -> int:
    """Run the drift job; returns 0 (no drift), 1 (drift) or 2 (error)."""
    return run_job(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
