"""Tests for the sizing model and ``make advise``: concurrency, provisioned concurrency, cost, bad inputs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml

from capacity import advisor, sizing

PRICES = {"region": "us-east-1", "currency": "USD", "retrieved": "2026-12-01",
          "serverless": {"on_demand_per_gb_second": {"value": 0.00002}, "provisioned_per_gb_second": {"value": None},
                         "provisioned_inference_per_gb_second": {"value": None},
                         "data_processed_per_gb": {"value": 0.016}},
          "instances": {"ml.m5.large": {"per_hour": 0.115, "vcpus": 2}}}
MEASURED = {"service_time_s": 0.1, "p99_measured_ms": 150.0, "memory_mb": 2048, "cold_start_s": 2.0,
            "request_bytes": 500.0}


def test_max_concurrency_keeps_the_target_below_the_knee_with_headroom() -> None:
    advice = sizing.advise(rps=20, p99_ms=5000, prices=PRICES, **MEASURED)
    # 20/s x 0.1 s = 2 in flight on average; random arrivals put up to 2 + 3 x sqrt(2) = 6.2 in flight
    assert advice.max_concurrency == 7
    assert advice.knee_rps == pytest.approx(70)
    # with many in flight the 70 % utilisation bound is the larger: 1000/s x 0.1 s = 100 -> 100 / 0.7 = 142.9
    assert sizing.advise(rps=1000, p99_ms=5000, prices=PRICES, **MEASURED).max_concurrency == 143
    assert advice.provisioned_concurrency == 0, "a 2 s cold start fits a 5 s p99"


def test_a_cold_start_that_breaks_the_p99_target_buys_provisioned_concurrency() -> None:
    advice = sizing.advise(rps=20, p99_ms=500, prices=PRICES, **MEASURED)
    assert advice.provisioned_concurrency == 2
    assert set(advice.cost_left_out) >= {"provisioned_per_gb_second", "provisioned_inference_per_gb_second"}


def test_the_monthly_cost_and_the_real_time_break_even() -> None:
    advice = sizing.advise(rps=1, p99_ms=5000, prices=PRICES, **MEASURED)
    month = 730 * 3600
    compute = month * 0.1 * 2 * 0.00002
    data = month * 500 / 1e9 * 0.016
    assert advice.monthly_cost == pytest.approx(compute + data, abs=0.01)
    # one ml.m5.large costs 0.115/3600 per second; serverless costs rps x 0.1 s x 2 GB x 0.00002 per second
    assert advice.break_even_rps["ml.m5.large"] == pytest.approx(0.115 / 3600 / (0.1 * 2 * 0.00002), abs=0.01)


def test_no_break_even_when_one_instance_at_capacity_still_costs_more_than_serverless() -> None:
    # Given an instance whose break-even rate (0.115/3600 / (0.1 s x 2 GB x 0.00002) = 8/s) is past what its one
    # vCPU serves (1 x 0.7 / 0.1 s = 7/s)
    prices = {**PRICES, "instances": {"ml.one": {"per_hour": 0.115, "vcpus": 1}}}
    advice = sizing.advise(rps=1, p99_ms=5000, prices=prices, **MEASURED)
    # Then there is none: a second instance past 7/s doubles the cost, and ceil(r/7) instances always cost more
    # than serverless at r requests/s
    assert advice.break_even_rps == {"ml.one": None}
    for rate in (1, 7, 8, 14, 15, 100, 10_000):
        assert math.ceil(rate / 7) * 0.115 / 3600 > rate * 0.1 * 2 * 0.00002
    text = advisor.markdown(advice, rps=1, p99_ms=5000, measured=MEASURED, prices=prices)
    assert "| a real-time ml.one costs less above | never (serverless costs less even at its full capacity) |" in text


def test_more_than_an_endpoint_can_take_is_capped_and_said() -> None:
    advice = sizing.advise(rps=2000, p99_ms=5000, prices=PRICES, **MEASURED)
    assert advice.max_concurrency == 200
    assert any("per-endpoint maximum" in note for note in advice.notes)


def test_a_p99_target_below_the_measured_latency_is_said_not_hidden() -> None:
    advice = sizing.advise(rps=5, p99_ms=100, prices=PRICES, **MEASURED)
    assert any("already above the target" in note for note in advice.notes)
    assert advice.provisioned_concurrency == 0, "warm instances cannot fix a slow model"


def test_the_predicted_knee_is_max_concurrency_over_service_time() -> None:
    assert sizing.predicted_knee_rps(max_concurrency=2, service_time_s=0.2) == pytest.approx(10)
    with pytest.raises(ValueError, match="positive"):
        sizing.predicted_knee_rps(max_concurrency=2, service_time_s=0)


def result_file(tmp_path: Path, **changes) -> Path:
    # Steps as make loadtest writes them (served_rps x seconds: how many requests a step's p99 stands on).
    result = {"service_time_s": 0.1, "steps": [{"p99_ms": 150.0, "served_rps": 5.0, "seconds": 4.0},
                                               {"p99_ms": 140.0, "served_rps": 10.0, "seconds": 4.0}],
              "meta": {"settings": {"endpoint_memory_mb": 2048}, "stand_in": {"cold_start_s": 1.5},
                       "mean_request_bytes": 400}}
    result.update(changes)
    path = tmp_path / "ramp.json"
    path.write_text(json.dumps(result))
    return path


def test_the_cli_prints_the_recommendation_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(yaml.safe_dump(PRICES))
    out = tmp_path / "advice.json"
    code = advisor.main(["--rps", "20", "--p99-ms", "1000", "--result", str(result_file(tmp_path)),
                         "--prices", str(prices), "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "| endpoint_max_concurrency | 7 " in text
    assert "| a real-time ml.m5.large costs less above |" in text
    assert json.loads(out.read_text())["advice"]["provisioned_concurrency"] == 2


def test_the_shipped_price_table_loads_and_says_it_is_unverified() -> None:
    prices = advisor.load_prices(advisor.PRICES)
    assert prices["retrieved"]
    assert all(entry["verified"] is False and entry["source"] for entry in prices["serverless"].values())
    assert all(entry["source"] for entry in prices["instances"].values())


@pytest.mark.parametrize(
    ("args", "result", "prices", "message"),
    [
        (["--rps", "0"], None, None, "must be positive"),
        ([], "missing", None, "file not found (run `make loadtest` first)"),
        ([], "not json", None, "not a load-test result"),
        ([], {"service_time_s": None}, None, "too few requests were served"),
        ([], {"meta": {"settings": {"endpoint_memory_mb": 1000}}}, None, "not a serverless size"),
        ([], None, "serverless: {on_demand_per_gb_second: {value: -1}}", "non-negative number"),
        ([], None, "serverless: {}\ninstances: {ml.x: {per_hour: 1}}", "instances.ml.x needs"),
        ([], None, 'serverless: {on_demand_per_gb_second: {value: 1, verified: "false"}}', "verified must be true or"),
        ([], None, "[unclosed", "not valid YAML"),
        ([], None, "just text", "expected a 'serverless' section"),
        (["--rps", "nan"], None, None, "positive finite numbers"),
        (["--p99-ms", "inf"], None, None, "positive finite numbers"),
        ([], {"service_time_s": "abc"}, None, "service_time_s must be a number"),
        ([], {"steps": 5}, None, "steps must be a list"),
        ([], {"steps": [{"p99_ms": "slow", "served_rps": 5.0, "seconds": 4.0}]}, None, "p99_ms must be a number"),
        ([], {"meta": {"settings": {"endpoint_memory_mb": 2048}, "stand_in": [1]}}, None, "stand_in must be"),
        ([], None, "serverless: {on_demand_per_gb_second: .nan}", "non-negative number"),
        ([], None, "serverless: {}\ninstances: [1, 2]", "instances must be a mapping"),
        ([], {"service_time_s": 10**400}, None, "service_time_s must be a number"),
        ([], None, f"serverless: {{on_demand_per_gb_second: {10**400}}}", "non-negative number"),
        ([], {"service_time_s": 1e-9}, None, "service_time_s 1e-09 s is below 1e-06 s: not a measured time"),
        (["--rps", "1e308"], None, None, "--rps 1e+308 is too large for the prices in "),
        (["--rps", "1e10"], None, "serverless: {on_demand_per_gb_second: 1.0e+300}",
         "--rps 1e+10 is too large for the prices in "),
        ([], {"service_time_s": 61.0}, None, "service_time_s 61 s is above the 60 s a serverless invocation"),
        ([], {"meta": {"settings": {"endpoint_memory_mb": 2048}, "mean_request_bytes": 1e300}}, None,
         "meta.mean_request_bytes 1e+300 is above the 4,194,304 bytes a serverless request may carry"),
        ([], None, "serverless: {5: 1}", "serverless.5 must be named by text"),
        ([], None, "serverless: {}\ninstances: {true: {per_hour: 1, vcpus: 2}}", "instances.True must be named by text"),
        ([], {"steps": [{"p99_ms": -5.0, "served_rps": 5.0, "seconds": 4.0},
                        {"p99_ms": 140.0, "served_rps": 10.0, "seconds": 4.0}]}, None,
         "step 0: p99_ms must be a number of milliseconds, at least 0, or null, got -5.0"),
        ([], {"steps": [{"p99_ms": 150.0, "served_rps": 5.0, "seconds": 4.0},
                        {"p99_ms": float("nan"), "served_rps": 10.0, "seconds": 4.0}]}, None,
         "step 1: p99_ms must be a number of milliseconds, at least 0, or null, got nan"),
        ([], {"steps": [{"p99_ms": 150.0, "served_rps": 5.0, "seconds": 4.0},
                        {"p99_ms": None, "served_rps": -1.0, "seconds": 4.0}]}, None,
         "step 1: served_rps must be a non-negative number, got -1.0"),
        ([], {"steps": [{"p99_ms": 150.0, "served_rps": 5.0, "seconds": float("inf")}]}, None,
         "step 0: seconds must be a positive number, got inf"),
    ],
    ids=["zero-rps", "no-result", "result-not-json", "nothing-served", "bad-memory", "negative-price",
         "instance-without-vcpus", "verified-quoted", "prices-not-yaml", "prices-not-a-table", "nan-rps", "inf-p99",
         "service-time-text", "steps-not-a-list", "p99-text", "stand-in-a-list", "nan-price", "instances-a-list",
         "service-time-beyond-a-double", "price-beyond-a-double", "service-time-subnormal", "rps-overflowing",
         "prices-overflowing", "service-time-past-the-timeout", "request-bytes-past-the-payload-limit",
         "price-named-by-a-number", "instance-named-by-a-bool", "negative-p99", "nan-p99-in-a-later-step",
         "negative-served-rate", "infinite-seconds"],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture, args, result, prices,
                                          message: str) -> None:
    if result == "missing":
        result_path = tmp_path / "none.json"
    elif result == "not json":
        result_path = tmp_path / "bad.json"
        result_path.write_text("{")
    else:
        result_path = result_file(tmp_path, **(result or {}))
    prices_path = advisor.PRICES
    if prices is not None:
        prices_path = tmp_path / "prices.yaml"
        prices_path.write_text(prices)
    base = {"--rps": "10", "--p99-ms": "500"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [*(x for kv in base.items() for x in kv), "--result", str(result_path), "--prices", str(prices_path)]
    code = advisor.main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("price", ["0", "1.0e-320"], ids=["free", "so-small-the-cost-underflows"])
def test_a_bare_number_price_and_a_free_on_demand_price_are_read(tmp_path: Path, capsys, price: str) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"serverless: {{on_demand_per_gb_second: {price}}}\n"
                      "instances: {ml.m5.large: {per_hour: 0.1, vcpus: 2}}\n")
    assert advisor.main(["--rps", "20", "--p99-ms", "1000", "--result", str(result_file(tmp_path)),
                         "--prices", str(prices)]) == 0
    assert "costs less above" not in capsys.readouterr().out, "no break-even against a free price"


def test_the_measured_p99_ignores_a_step_that_served_too_few_requests(tmp_path: Path) -> None:
    steps = [{"p99_ms": 3.0, "served_rps": 0.25, "seconds": 4.0}, {"p99_ms": 140.0, "served_rps": 10.0, "seconds": 4.0}]
    assert advisor.load_result(result_file(tmp_path, steps=steps))["p99_measured_ms"] == 140.0


def test_an_unwritable_out_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "a-file").write_text("x")
    code = advisor.main(["--rps", "20", "--p99-ms", "1000", "--result", str(result_file(tmp_path)),
                         "--out", str(tmp_path / "a-file" / "advice.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: cannot write") and err.count("\n") == 1, err


def test_an_out_that_names_a_folder_is_a_usage_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    # pathlib drops the slash of "advice/": the advice was written as a file named "advice"
    code = advisor.main(["--rps", "20", "--p99-ms", "1000", "--result", str(result_file(tmp_path)),
                         "--out", f"{tmp_path / 'advice'}/"])
    err = capsys.readouterr().err
    assert code == 2 and "names a folder" in err and err.count("\n") == 1, err
    assert not (tmp_path / "advice").exists()


def _advise(tmp_path: Path, *, result: Path | None = None, prices: Path | None = None, out: Path | None = None):
    argv = ["--rps", "20", "--p99-ms", "1000", "--result", str(result or result_file(tmp_path)),
            "--prices", str(prices or advisor.PRICES)]
    return advisor.main([*argv, *(["--out", str(out)] if out else [])])


@pytest.mark.parametrize("which", ["result", "prices"])
@pytest.mark.parametrize("kind", ["fifo", "deeply-nested", "not-utf8"])  # a folder: click's dir_okay=False
def test_an_input_that_cannot_be_read_is_one_line_at_once(tmp_path: Path, capsys, which: str, kind: str) -> None:
    # Given a result or price table that is a FIFO (reading it waited for a writer forever),
    # nesting thousands deep (the parsers raised RecursionError) or not UTF-8
    path = tmp_path / f"bad.{'json' if which == 'result' else 'yaml'}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "deeply-nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        path.write_bytes(b"\xff\xfe{}")
    # When the advisor reads it
    code = _advise(tmp_path, **{which: path})
    # Then it stops with one line naming the file and what is wrong with it
    err = capsys.readouterr().err
    expected = {"fifo": "not a regular file", "not-utf8": "not UTF-8 text",
                "deeply-nested": "nested too deeply"}[kind]
    assert code == 1 and err.startswith(f"error: {path}: {expected}"), err
    assert "Traceback" not in err and err.count("\n") == 1, err


@pytest.mark.parametrize("which", ["result", "prices"])
def test_an_out_that_names_an_input_is_refused_and_the_input_kept(tmp_path: Path, capsys, which: str) -> None:
    # Given --out naming the very file read as --result or --prices (spelt another way)
    prices = tmp_path / "prices.yaml"
    prices.write_text(yaml.safe_dump(PRICES))
    result = result_file(tmp_path)
    target = result if which == "result" else prices
    before = target.read_bytes()
    # When the advisor runs
    code = _advise(tmp_path, result=result, prices=prices, out=tmp_path / "." / target.name)
    # Then it refuses before reading anything, and the input is as it was
    err = capsys.readouterr().err
    assert code == 1 and f"is the --{which} file: it would be replaced by the advice" in err, err
    assert target.read_bytes() == before


def test_a_rate_so_small_its_load_underflows_is_advised_not_a_traceback() -> None:
    advice = sizing.advise(rps=5e-324, p99_ms=500, prices=PRICES, **MEASURED)
    assert (advice.max_concurrency, advice.provisioned_concurrency) == (1, 1)
