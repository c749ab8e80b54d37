"""Tests for ``make loadtest``: what it may target, its quick smoke run, and the knee against the model.

The runs go through the real chain on loopback (stand-in front door, Lambda instances, serverless endpoint)
around a container the test slows (``tests/infra/slow_container.py``), so the service time is known.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import pytest

from capacity import loadtest, report, sizing
from core.cli import UserError
from tests.infra.slow_container import running
from tests.serving.serving_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "base", "path"),
    [
        ("http://127.0.0.1:8000/score/predict-student-score", "http://127.0.0.1:8000", "/score/predict-student-score"),
        ("http://localhost:9/x?y=1", "http://localhost:9", "/x?y=1"),
        ("https://abc.execute-api.us-east-1.amazonaws.com/score/predict-student-score",
         "https://abc.execute-api.us-east-1.amazonaws.com", "/score/predict-student-score"),
    ],
)
def test_loopback_or_an_https_stage_is_a_target(url: str, base: str, path: str) -> None:
    assert loadtest.check_url(url) == (base, path)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.org/score/predict-student-score", "refusing plain http to example.org"),
        ("http://10.0.0.5/x", "refusing plain http"),
        ("ftp://127.0.0.1/x", "must be an http(s) URL"),
        ("not a url", "must be an http(s) URL"),
    ],
)
def test_anything_else_is_refused(url: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loadtest.check_url(url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peak-rps", "500"], "at most 200"),
        (["--duration", "3600"], "at most 600 s"),
        (["--url", "http://example.org/x"], "refusing plain http"),
        (["-c", "endpoint_max_concurency=2"], "unknown setting"),
        (["--peak-rps", "nan"], "--peak-rps must be a finite number"),
        (["--url", "http://[::1"], "--url is not a URL"),
        (["--name", "a/b"], "--name must be a plain file name"),
        (["--profile", "soak", "--steps", "4"], "--steps applies only to the ramp profile, not soak"),
        (["--profile", "spike", "--start-rps", "2"], "--start-rps applies only to the ramp profile, not spike"),
        (["--quick", "--peak-rps", "50"], "--peak-rps is set by --quick"),
        (["--quick", "--duration", "60"], "--duration is set by --quick"),
        (["--url", "https://127.0.0.1:9/predict", "--lambda-concurrency", "4"],
         "--lambda-concurrency applies only to the stand-in, not with --url"),
        (["--url", "https://127.0.0.1:9/predict", "--container-url", "http://127.0.0.1:9"],
         "--container-url applies only to the stand-in"),
    ],
    ids=["rate", "duration", "remote-http", "misspelt-setting", "nan-rate", "broken-ipv6-url", "name-a-path",
         "steps-outside-a-ramp", "start-rps-outside-a-ramp", "peak-with-quick", "duration-with-quick",
         "stand-in-flag-with-url", "container-with-url"],
)
def test_bad_options_are_one_line_before_any_load(args: list[str], message: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code = loadtest.main([*args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "nothing written"


@pytest.mark.parametrize("value", ["nan", "-1"])
def test_a_range_option_out_of_its_range_or_nan_is_a_usage_error(value: str, tmp_path: Path, capsys) -> None:
    # click's range check lets NaN through; core.cli.FiniteRange refuses it as it refuses -1: exit 2, one line.
    assert loadtest.main(["--timeout", value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--timeout'" in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir()), "nothing written"


@pytest.mark.parametrize("name", ["", "  "], ids=["empty", "blank"])
def test_a_blank_name_is_a_usage_error_not_the_profiles_name(name: str, tmp_path: Path, capsys) -> None:
    # Given the full ramp the advisor reads
    (tmp_path / "ramp.json").write_text("{}")
    # When a quick run is given a blank --name (it used to fall back to the profile's: ramp.json)
    started = time.monotonic()
    code = loadtest.main(["--quick", "--name", name, "--out", str(tmp_path)])
    # Then it is refused in one line before any load, and the ramp is untouched
    err = capsys.readouterr().err
    assert code == 2
    assert "Invalid value for '--name'" in err and err.count("\n") == 1, err
    assert time.monotonic() - started < 10, "refused before the stand-in started and the load ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ramp.json"]
    assert (tmp_path / "ramp.json").read_text() == "{}"


def test_an_output_that_is_a_folder_is_refused_before_any_load(tmp_path: Path, capsys) -> None:
    (tmp_path / "ramp.png").mkdir()
    started = time.monotonic()
    assert loadtest.main(["--quick", "--name", "ramp", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "ramp.png is a folder" in err and err.count("\n") == 1, err
    assert time.monotonic() - started < 10, "refused before the stand-in started and the load ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ramp.png"]


def test_a_report_that_cannot_be_completed_leaves_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    # Given a complete earlier result, and a figure that fails to draw this time
    from capacity import plot as plot_module

    for ext in ("json", "md", "png"):
        (tmp_path / f"ramp.{ext}").write_text(f"earlier {ext}")

    def broken(result, path):
        path.write_bytes(b"half a figure")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plot_module, "plot", broken)
    with pytest.raises(OSError, match="No space left"):
        report.write({"steps": []}, tmp_path, "ramp")
    # Then the earlier set is whole and no temp file is left
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        f"ramp.{ext}": f"earlier {ext}" for ext in ("json", "md", "png")}


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "capacity").glob("*.py")))
def test_every_capacity_module_imports_without_locust(name: str) -> None:
    module = importlib.import_module(f"capacity.{name}")
    assert "locust" not in sys.modules or name == "engine", "Locust patches the standard library: never at import"
    if hasattr(module, "cli"):
        assert callable(getattr(module, "main", None)), f"capacity.{name} has a command but no main(argv)"


@pytest.mark.slow
def test_the_quick_mode_runs_end_to_end_against_the_stand_in(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with running(delay_s=0.01) as container:
        code = loadtest.main(["--quick", "--container-url", container.url, "--out", str(tmp_path),
                              "--cold-start-overhead", "0", "--lambda-concurrency", "2"])
    assert code == 0, capsys.readouterr().err
    # Under its own name: a smoke run must not replace the full ramp the advisor reads by default
    assert not (tmp_path / "ramp.json").exists()
    result = json.loads((tmp_path / "ramp-quick.json").read_text())
    assert result["total"]["requests"] > 0
    assert result["total"]["errors"] == {}, result["total"]
    assert result["meta"]["stand_in"]["invocations"] >= result["total"]["requests"]
    assert (tmp_path / "ramp-quick.png").stat().st_size > 0
    assert "| step |" in (tmp_path / "ramp-quick.md").read_text()


def test_a_profile_that_offers_nothing_is_refused_before_any_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "loadtest"
    assert loadtest.main(["--peak-rps", "0.0001", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "ramp step 1 offers 0 requests" in err and err.count("\n") == 1, err
    assert not out.exists(), "no output folder for a run that never started"


@pytest.mark.slow
def test_a_url_where_nothing_answers_writes_no_result(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Given an earlier result, and a loopback URL where nothing listens
    earlier = tmp_path / "ramp-quick.json"
    earlier.write_text("earlier")
    url = f"http://127.0.0.1:{free_port()}/predict-student-score"
    # When the smoke run targets it
    code = loadtest.main(["--quick", "--url", url, "--out", str(tmp_path)])
    # Then it fails in one line naming the URL and what happened, and the earlier result stands alone
    err = capsys.readouterr().err
    assert code == 1 and f"nothing answered at {url}" in err and "connection_error): no result written" in err, err
    assert err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ramp-quick.json"] and earlier.read_text() == "earlier"


@pytest.mark.slow
def test_the_knee_the_model_predicts_is_the_knee_the_stand_in_shows(tmp_path: Path) -> None:
    # Given an endpoint of two instances in front of a container that takes 0.2 s per request
    with running(delay_s=0.2) as container:
        code = loadtest.main(["--container-url", container.url, "-c", "endpoint_max_concurrency=2",
                              "--cold-start-overhead", "0", "--lambda-concurrency", "8", "--peak-rps", "14",
                              "--start-rps", "4", "--steps", "6", "--duration", "18", "--batch-share", "0",
                              "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "ramp.json").read_text())
    # When the model predicts the knee from max_concurrency and the measured service time
    predicted = sizing.predicted_knee_rps(max_concurrency=2, service_time_s=result["service_time_s"])
    # Then the measured knee (where errors or p99 start to climb) is within 20 % of it
    measured = result["knee"]["knee_rps"]
    assert measured is not None, result["knee"]
    assert abs(measured - predicted) <= 0.2 * predicted, (predicted, result["knee"], result["steps"])
    assert result["meta"]["stand_in"]["throttled"] > 0, "the endpoint, not something else, set the knee"
