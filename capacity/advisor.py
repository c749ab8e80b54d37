"""Owns ``make advise``: a target (requests/s, p99) and a load-test result in, a serverless size and its cost out.

Reads the load test's JSON (``make loadtest``: service time and p99 at low load, the memory size and cold
start it ran with, the mean body size) and the price table (``capacity/prices.yaml``, user-edited, no network),
and prints the recommendation of ``capacity/sizing.py`` as markdown (and JSON with ``--out``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from capacity import report, sizing
from core.cli import OutputFile, UserError, run_cli
from core.files import is_special, replace_atomically
from core.numbers import finite_number
from infra.settings import SERVERLESS_MEMORY_MB

ROOT = Path(__file__).resolve().parents[1]
PRICES = Path(__file__).resolve().parent / "prices.yaml"
MIN_SERVICE_S = 1e-6


def _read_text(path: Path, *, missing: str = "file not found") -> str:
    """The text of ``path``; UserError when it is missing or not a regular file (a FIFO would wait forever)."""
    if is_special(path):
        raise UserError(f"{path}: not a regular file")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {missing}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None


def load_prices(path: Path) -> dict[str, Any]:
    """The price table, every serverless price as ``{"value": ...}``; UserError naming what is missing or wrong."""
    text = _read_text(path)
    try:
        prices = yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(f"{path}: not valid YAML") from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise UserError(f"{path}: nested too deeply to be a price table") from None
    if not isinstance(prices, dict) or not isinstance(prices.get("serverless"), dict):
        raise UserError(f"{path}: expected a 'serverless' section of prices")
    # YAML reads `5:` or `true:` as a number or a bool; a price or an instance type is named by text (the advice
    # joins the names into its lines).
    for section in ("serverless", "instances"):
        names = prices.get(section)
        bad = [key for key in names if not isinstance(key, str)] if isinstance(names, dict) else []
        if bad:
            raise UserError(f"{path}: {section}.{bad[0]!r} must be named by text (a price or an instance type)")
    for key, entry in list(prices["serverless"].items()):
        value = entry.get("value") if isinstance(entry, dict) else entry
        if value is not None and (not finite_number(value) or value < 0):
            raise UserError(f"{path}: serverless.{key}.value must be a non-negative number or null")
        # A quoted "false" is text, which reads as true: the one warning that a price is unverified would vanish.
        if isinstance(entry, dict) and not isinstance(entry.get("verified", False), bool):
            raise UserError(f"{path}: serverless.{key}.verified must be true or false (unquoted)")
        if not isinstance(entry, dict):  # a bare number (or null) is the value itself
            prices["serverless"][key] = {"value": value}
    instances = prices.get("instances") or {}
    if not isinstance(instances, dict):
        raise UserError(f"{path}: instances must be a mapping of instance type to per_hour and vcpus")
    for name, instance in instances.items():
        if not isinstance(instance, dict) or not all(
                finite_number(instance.get(k)) and instance[k] > 0 for k in ("per_hour", "vcpus")):
            raise UserError(f"{path}: instances.{name} needs positive per_hour and vcpus")
    return prices


def load_result(path: Path) -> dict[str, Any]:
    """The measured inputs of a load-test result; UserError when it is not one or measured nothing served."""
    text = _read_text(path, missing="file not found (run `make loadtest` first)")
    try:
        result = json.loads(text)
        steps, meta = result["steps"], result["meta"]
        service = result["service_time_s"]
        memory = meta["settings"]["endpoint_memory_mb"]
        stand_in, request_bytes = meta.get("stand_in") or {}, meta.get("mean_request_bytes") or 0
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path}: not a load-test result (no steps, settings or service time)") from None
    except RecursionError:  # the JSON decoder recurses once per level of nesting
        raise UserError(f"{path}: nested too deeply to be a load-test result") from None
    if service is None or (finite_number(service) and service <= 0):
        raise UserError(f"{path}: too few requests were served to measure a service time")
    if not finite_number(service):
        raise UserError(f"{path}: service_time_s must be a number of seconds, got {service!r}")
    if service < MIN_SERVICE_S:  # a measured request takes far longer; tinier makes every rate infinite
        raise UserError(f"{path}: service_time_s {service:g} s is below {MIN_SERVICE_S:g} s: not a measured time")
    if service > sizing.MAX_SERVICE_S:
        raise UserError(f"{path}: service_time_s {service:g} s is above the {sizing.MAX_SERVICE_S:g} s a serverless "
                        f"invocation may take: not a served request")
    if not (isinstance(memory, int) and not isinstance(memory, bool)) or memory not in SERVERLESS_MEMORY_MB:
        raise UserError(f"{path}: endpoint_memory_mb {memory!r} is not a serverless size {SERVERLESS_MEMORY_MB}")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise UserError(f"{path}: steps must be a list of load steps")
    if not isinstance(stand_in, dict) or not finite_number(request_bytes) or request_bytes < 0:
        raise UserError(f"{path}: meta.stand_in must be a mapping and meta.mean_request_bytes a number")
    if request_bytes > sizing.MAX_REQUEST_BYTES:
        raise UserError(f"{path}: meta.mean_request_bytes {request_bytes:g} is above the {sizing.MAX_REQUEST_BYTES:,} "
                        f"bytes a serverless request may carry")
    cold_start = stand_in.get("cold_start_s")
    if cold_start is not None and (not finite_number(cold_start) or cold_start < 0):
        raise UserError(f"{path}: meta.stand_in.cold_start_s must be a non-negative number")
    for index, step in enumerate(steps):
        _check_step(path, index, step)
    # The quietest step's p99, as the report reads it: only steps that served enough to have one.
    p99 = report.quietest([s for s in steps if s["p99_ms"] is not None], "p99_ms")
    return {"service_time_s": float(service), "p99_measured_ms": service * 1000 if p99 is None else p99,
            "memory_mb": memory, "cold_start_s": cold_start, "request_bytes": float(request_bytes)}


def _check_step(path: Path, index: int, step: dict[str, Any]) -> None:
    """UserError naming step ``index`` (the report's numbering) unless its numbers are ones a load test measures.

    Every step is checked, not only the quietest: a NaN compares false with everything, so ``min`` may pass it
    over, and a negative p99 would be the quietest and size the endpoint on a latency nobody measured.
    """
    if any(key not in step for key in ("p99_ms", "served_rps", "seconds")):
        raise UserError(f"{path}: step {index} lacks its p99_ms, served_rps or seconds")
    p99 = step["p99_ms"]
    if p99 is not None and (not finite_number(p99) or p99 < 0):
        raise UserError(f"{path}: step {index}: p99_ms must be a number of milliseconds, at least 0, or null, "
                        f"got {p99!r}")
    if not finite_number(step["served_rps"]) or step["served_rps"] < 0:
        raise UserError(f"{path}: step {index}: served_rps must be a non-negative number, got {step['served_rps']!r}")
    if not finite_number(step["seconds"]) or step["seconds"] <= 0:
        raise UserError(f"{path}: step {index}: seconds must be a positive number, got {step['seconds']!r}")


def _check_out(out: Path | None, inputs: dict[str, Path]) -> None:
    """Refuse an ``--out`` that is one of the inputs: writing the advice would replace what it was read from."""
    if out is None:
        return
    for option, path in inputs.items():
        if out.resolve() == path.resolve() or (out.exists() and path.exists() and out.samefile(path)):
            raise UserError(f"--out {out} is the {option} file: it would be replaced by the advice")


def markdown(advice: sizing.Advice, *, rps: float, p99_ms: float, measured: dict[str, Any],
             prices: dict[str, Any]) -> str:
    cost = "n/a" if advice.monthly_cost is None else f"{advice.monthly_cost:,.2f} {prices.get('currency', 'USD')}"
    lines = [
        f"Target {rps:g} requests/s at p99 <= {p99_ms:g} ms; measured service time "
        f"{measured['service_time_s'] * 1000:.0f} ms, p99 {measured['p99_measured_ms']:.0f} ms at "
        f"{measured['memory_mb']} MB.",
        "",
        "| setting | value |",
        "|---|---|",
        f"| endpoint_memory_mb | {advice.memory_mb} |",
        f"| endpoint_max_concurrency | {advice.max_concurrency} (throttles past about {advice.knee_rps:g}/s) |",
        f"| endpoint_provisioned_concurrency | {advice.provisioned_concurrency} |",
        f"| monthly cost ({prices.get('region', '?')}, prices of {prices.get('retrieved', '?')}) | {cost} |",
    ]
    for name, rate in advice.break_even_rps.items():
        lines.append(f"| a real-time {name} costs less above | {rate:g} requests/s sustained |" if rate is not None
                     else f"| a real-time {name} costs less above | never (serverless costs less even at its "
                          "full capacity) |")
    if advice.cost_left_out:
        lines += ["", "Left out of the cost (no price in the table): " + ", ".join(advice.cost_left_out) + "."]
    unverified = [k for k, v in (prices.get("serverless") or {}).items() if isinstance(v, dict)
                  and v.get("value") is not None and not v.get("verified")]
    if unverified:
        lines += ["", "Prices not verified against AWS: " + ", ".join(unverified) + " (see the price table)."]
    if advice.notes:
        lines += ["", *(f"- {note}" for note in advice.notes)]
    return "\n".join(lines) + "\n"


@click.command(help="Recommend serverless memory, max_concurrency and provisioned concurrency, and their cost.")
@click.option("--rps", type=float, required=True, help="Sustained requests per second to serve.")
@click.option("--p99-ms", type=float, required=True, help="The p99 latency target, in ms.")
@click.option("--result", "result_path", type=click.Path(dir_okay=False, path_type=Path),
              default=ROOT / "dist" / "loadtest" / "ramp.json", show_default=True, help="A make loadtest JSON.")
@click.option("--prices", "prices_path", type=click.Path(dir_okay=False, path_type=Path), default=PRICES,
              show_default=True, help="The price table.")
@click.option("--out", type=OutputFile(), default=None, help="Also write JSON here.")
def cli(rps: float, p99_ms: float, result_path: Path, prices_path: Path, out: Path | None) -> int:
    if not (finite_number(rps) and finite_number(p99_ms)) or rps <= 0 or p99_ms <= 0:
        raise UserError("--rps and --p99-ms must be positive finite numbers")
    _check_out(out, {"--result": result_path, "--prices": prices_path})
    measured = load_result(result_path)
    prices = load_prices(prices_path)
    advice = sizing.advise(rps=rps, p99_ms=p99_ms, prices=prices, **measured)
    try:  # strict JSON: a target so large its cost overflows a float has no figure to write
        data = json.dumps({"target": {"rps": rps, "p99_ms": p99_ms}, "measured": measured,
                           "advice": advice.to_json()}, indent=2, allow_nan=False) + "\n"
    except ValueError:
        # The measured sizes are bounded by what a serverless request may be (load_result): --rps or a price.
        raise UserError(f"--rps {rps:g} is too large for the prices in {prices_path}: the advice's figures "
                        f"overflow a float") from None
    click.echo(markdown(advice, rps=rps, p99_ms=p99_ms, measured=measured, prices=prices))
    if out is not None:
        try:
            replace_atomically(out, data.encode("utf-8"))
        except OSError as err:
            raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the advisor; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
