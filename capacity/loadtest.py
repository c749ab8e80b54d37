"""Owns ``make loadtest``: a ramp, spike or soak against the local stand-in (default) or a deployed stage's URL.

Without ``--url`` it starts the stand-in chain on loopback (``capacity/standin.py``) with the deployment
settings of ``--env`` (and ``-c`` overrides), so the endpoint throttles at the ``max_concurrency`` the stack
deploys. With ``--url`` it targets that URL, sending ``--api-key`` (env ``SMOKE_API_KEY``, the smoke test's)
as ``X-Api-Key``; a host other than loopback must be ``https`` (API Gateway stages are), so a mistyped
address never gets load by accident. Bodies are sample-data records, alone or in batches. Bounded: at most
600 s, 200 requests/s and ``--max-requests``. Writes ``NAME.json``, ``NAME.md`` and ``NAME.png`` to ``--out``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from capacity import bodies, profiles, report, standin
from core.cli import FiniteRange, UserError, run_cli
from core.params import load_params
from infra.local.serverless import settings_for
from serving import contract

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"peak_rps": 4.0, "duration_s": 4.0, "steps": 2, "max_requests": 40}


def check_url(url: str) -> tuple[str, str]:
    """Split ``url`` into base and path; UserError unless it is http(s) on loopback, or https elsewhere."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. "Invalid IPv6 URL"
        raise UserError(f"--url is not a URL, got {url!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise UserError(f"--url must be an http(s) URL with a host, got {url!r}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and parts.scheme != "https":
        raise UserError(f"refusing plain http to {host}: a deployed stage is https (and loopback needs no --url)")
    path = parts.path or "/"
    return f"{parts.scheme}://{parts.netloc}", path + (f"?{parts.query}" if parts.query else "")


def _unwritable(out_dir: Path, err: OSError | ValueError) -> UserError:
    return UserError(f"cannot write the results into {out_dir}: {getattr(err, 'strerror', None) or err}")


def run_engine(spec: dict[str, Any], workdir: Path, timeout_s: float) -> list[list[Any]]:
    """Run ``capacity/engine.py`` in its own process (Locust patches the standard library); its rows."""
    spec_file, out_file = workdir / "spec.json", workdir / "rows.jsonl"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    try:
        done = subprocess.run([sys.executable, "-m", "capacity.engine", str(spec_file), str(out_file)], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"the load generator did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0 or not out_file.exists():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"the load generator failed: {last}")
    return [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines() if line]


def _check_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # An empty name used to fall back to the profile's, so `--quick --name ''` replaced the ramp the advisor reads.
    if value is not None and not value.strip():
        raise click.BadParameter("must name the output files, got a blank name", ctx, param)
    return value


# Options that only some runs read. Given where they would be parsed and then ignored, they are refused, so a run
# never measures something other than what its command line says.
_RAMP_ONLY = ("steps", "start_rps")
_QUICK_SETS = ("peak_rps", "duration_s", "steps")
_STAND_IN_ONLY = ("container_url", "model_tarball", "lambda_concurrency", "cold_start_overhead")


def refuse_ignored(ctx: click.Context, *, profile: str, url: str | None, quick: bool) -> None:
    """UserError naming the first option given on the command line that this run would not read."""
    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params
             if p.name and ctx.get_parameter_source(p.name) is click.core.ParameterSource.COMMANDLINE}
    for name in _RAMP_ONLY if profile != "ramp" else ():
        if name in flags:
            raise UserError(f"{flags[name]} applies only to the ramp profile, not {profile}")
    for name in _QUICK_SETS if quick else ():
        if name in flags:
            raise UserError(f"{flags[name]} is set by --quick; give one or the other")
    for name in _STAND_IN_ONLY if url is not None else ():
        if name in flags:
            raise UserError(f"{flags[name]} applies only to the stand-in, not with --url")


def _stand_in_args(*, container_url: str | None, model_tarball: Path | None, env: str, context: Sequence[str],
                   lambda_concurrency: int | None, cold_start_overhead: float | None) -> list[str]:
    args = ["--env", env]
    if cold_start_overhead is not None:
        args += ["--cold-start-overhead", str(cold_start_overhead)]
    for pair in context:
        args += ["-c", pair]
    if container_url:
        args += ["--container-url", container_url]
    if model_tarball:
        args += ["--model-tarball", str(model_tarball)]
    if lambda_concurrency:
        args += ["--lambda-concurrency", str(lambda_concurrency)]
    return args


@click.command(help="Load-test the predict API: the local stand-in by default, or a deployed stage's --url.")
@click.option("--url", default=None, help="A deployed stage's predict URL (https); default: start the stand-in.")
@click.option("--api-key", envvar="SMOKE_API_KEY", default=None, help="Sent as X-Api-Key (env SMOKE_API_KEY).")
@click.option("--profile", type=click.Choice(profiles.PROFILES), default="ramp", show_default=True)
@click.option("--peak-rps", type=float, default=20.0, show_default=True, help="Highest offered requests/s.")
@click.option("--duration", "duration_s", type=float, default=40.0, show_default=True, help="Seconds in all.")
@click.option("--steps", type=click.IntRange(2, 50), default=8, show_default=True, help="Ramp steps.")
@click.option("--start-rps", type=float, default=None, help="The ramp's first rate (default: peak / steps).")
@click.option("--batch-share", type=FiniteRange(0, 1), default=0.2, show_default=True,
              help="Share of requests carrying a batch instead of one record.")
@click.option("--batch-size", type=int, default=10, show_default=True, help="Records per batch request.")
@click.option("--timeout", "timeout_s", type=FiniteRange(1, 60), default=35.0, show_default=True,
              help="Client timeout per request (API Gateway gives up at 29 s).")
@click.option("--max-requests", type=click.IntRange(1, 100_000), default=None,
              help="Stop after this many requests (default: 1.2 x what the profile offers).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=ROOT / "dist" / "loadtest", show_default=True)
@click.option("--name", default=None, callback=_check_name,
              help="Output file name (default: the profile's; PROFILE-quick with --quick).")
@click.option("--quick", is_flag=True, help="A smoke run: 2 steps to 4 requests/s in 4 s, 40 requests at most.")
@click.option("--env", "env", default="dev", show_default=True, help="Stand-in: deployment settings (dev|prod).")
@click.option("-c", "--context", "context", multiple=True, metavar="FIELD=VALUE",
              help="Stand-in: override a deployment setting, e.g. -c endpoint_max_concurrency=2.")
@click.option("--container-url", default=None, help="Stand-in: use this running container.")
@click.option("--model-tarball", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Stand-in: the model to serve (default: params.yaml export.path).")
@click.option("--lambda-concurrency", type=click.IntRange(1, 64), default=None,
              help="Stand-in: Lambda instances (default: enough for the peak rate).")
@click.option("--cold-start-overhead", type=FiniteRange(0, 120), default=None,
              help="Stand-in: seconds a cold start adds to the container's start (default: the stand-in's).")
def cli(url: str | None, api_key: str | None, profile: str, peak_rps: float, duration_s: float, steps: int,
        start_rps: float | None, batch_share: float, batch_size: int, timeout_s: float, max_requests: int | None,
        out_dir: Path, name: str | None, quick: bool, env: str, context: tuple[str, ...],
        container_url: str | None, model_tarball: Path | None, lambda_concurrency: int | None,
        cold_start_overhead: float | None) -> int:
    # The plain float options (their bounds are checked with messages of their own): NaN and infinities here; the
    # range options are FiniteRange.
    floats = {"--peak-rps": peak_rps, "--duration": duration_s, "--start-rps": start_rps}
    bad = [flag for flag, value in floats.items() if value is not None and not math.isfinite(value)]
    if bad:
        raise UserError(f"{', '.join(bad)} must be a finite number")
    refuse_ignored(click.get_current_context(), profile=profile, url=url, quick=quick)
    if url is not None:
        check_url(url)
    if name is None:  # a smoke run must not replace the ramp the advisor reads (make advise)
        name = f"{profile}-quick" if quick else profile
    if quick:
        peak_rps, duration_s, steps = QUICK["peak_rps"], QUICK["duration_s"], QUICK["steps"]
        max_requests = max_requests or QUICK["max_requests"]
    try:
        plan = profiles.build(profile, peak_rps=peak_rps, duration_s=duration_s, steps=steps, start_rps=start_rps)
    except ValueError as error:
        raise UserError(str(error)) from None
    try:  # checked now (it makes the folder): a run of up to 10 minutes must not end on an output it cannot write
        report.output_paths(out_dir, name)
    except (OSError, ValueError) as err:
        raise _unwritable(out_dir, err) from None
    offered = sum(step.seconds * step.rps for step in plan)
    cap = max_requests or min(100_000, math.ceil(offered * 1.2) + 10)
    params = load_params(ROOT / "params.yaml")
    try:
        records = bodies.read_records(ROOT / params.data.path, target=params.data.target, ignore=params.data.ignore)
        payloads = bodies.make_bodies(records, count=min(cap, 1000), batch_share=batch_share,
                                      batch_size=batch_size)
    except ValueError as error:
        raise UserError(str(error)) from None
    try:
        settings = settings_for(env, context)
    except ValueError as error:
        raise UserError(f"deployment settings: {error}") from None
    headers = {contract.API_KEY_HEADER: api_key} if api_key else {}
    meta: dict[str, Any] = {"profile": profile, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                            "batch_share": batch_share, "batch_size": batch_size, "engine": "locust",
                            "mean_request_bytes": round(sum(map(len, payloads)) / len(payloads), 1),
                            # The deployment the numbers are for: the stand-in's, or what --env says was deployed.
                            "settings": {"env": env, "endpoint_memory_mb": settings.endpoint_memory_mb,
                                         "endpoint_max_concurrency": settings.endpoint_max_concurrency,
                                         "endpoint_provisioned_concurrency":
                                             settings.endpoint_provisioned_concurrency}}
    with tempfile.TemporaryDirectory(prefix="loadtest-") as work:
        if url is not None:
            base, path = check_url(url)
            meta["target"] = url
            rows = _load(base, path, headers, plan, payloads, cap, timeout_s, Path(work))
        else:
            lambdas = lambda_concurrency or min(32, max(4, math.ceil(max(s.rps for s in plan) * 0.5)))
            args = _stand_in_args(container_url=container_url, model_tarball=model_tarball, env=env,
                                  context=context, lambda_concurrency=lambdas,
                                  cold_start_overhead=cold_start_overhead)
            log = out_dir / f"{name}.stand-in.log"
            with standin.running(args, log=log) as chain:
                base, path = check_url(chain.url)
                rows = _load(base, path, headers, plan, payloads, cap, timeout_s, Path(work))
                meta["stand_in"] = {**chain.stats(), "env": env, "context": list(context),
                                    "lambda_instances": lambdas}
            meta["target"] = f"the stand-in ({env}{''.join(f', {c}' for c in context)})"
    result = report.analyse(rows, plan, meta)
    try:
        paths = report.write(result, out_dir, name)
    except (OSError, ValueError) as err:
        raise _unwritable(out_dir, err) from None
    click.echo(report.markdown(result))
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _load(base: str, path: str, headers: dict[str, str], plan: list[profiles.Step], payloads: list[bytes],
          cap: int, timeout_s: float, work: Path) -> list[list[Any]]:
    spec = {"base": base, "path": path, "headers": headers, "steps": [[s.seconds, s.rps] for s in plan],
            "bodies": [p.decode() for p in payloads], "max_requests": cap, "timeout_s": timeout_s}
    started = time.monotonic()
    rows = run_engine(spec, work, timeout_s=sum(s.seconds for s in plan) + timeout_s + 120)
    if not rows:
        raise UserError(f"no request was sent in {time.monotonic() - started:.0f} s")
    if all(row[2] is None for row in rows):  # [start, latency, status, origin, step]: no status, no answer
        origins = Counter(row[3] for row in rows)
        raise UserError(f"nothing answered at {base}{path} in {time.monotonic() - started:.0f} s ("
                        + ", ".join(f"{n} {origin}" for origin, n in sorted(origins.items()))
                        + "): no result written")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run a load test; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
