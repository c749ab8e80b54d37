"""Tests that the benchmark's building blocks work: baselines answer, wrk output parses, the table renders.

No timing is asserted here: performance is measured by ``make bench``, never by a unit test.
"""

from __future__ import annotations

import http.server
import importlib
import json
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from xgboost import XGBRegressor

from benchmarks import load, noop, report, servers
from benchmarks import run as bench_run
from benchmarks import training as bench_training
from benchmarks.reference import train as reference_train

TARGET = "Exam_Score"


@pytest.fixture(scope="module")
def sample_frame() -> pd.DataFrame:
    csv = Path(__file__).resolve().parents[2] / "data" / "student_performance.csv"
    if not csv.is_file():
        pytest.fail(f"{csv} is missing: run `make data` (dvc pull) before the tests")
    return pd.read_csv(csv).head(400)


@pytest.fixture(scope="module")
def reference_client(sample_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    """The reference Flask app on a small real model, loaded the way its container loads it."""
    folder = tmp_path_factory.mktemp("reference-model")
    encoded, encoders = reference_train.encode(sample_frame, TARGET)
    model = XGBRegressor(n_estimators=5, max_depth=2).fit(encoded.drop(columns=[TARGET]), encoded[TARGET])
    (folder / reference_train.MODEL_FILE).write_bytes(pickle.dumps(model))
    (folder / reference_train.ENCODERS_FILE).write_bytes(pickle.dumps(encoders))
    mp = pytest.MonkeyPatch()
    mp.setenv("SM_MODEL_DIR", str(folder))
    sys.modules.pop("benchmarks.reference.app", None)
    app_module = importlib.import_module("benchmarks.reference.app")
    yield app_module.app.test_client()
    sys.modules.pop("benchmarks.reference.app", None)
    mp.undo()


def _records(frame: pd.DataFrame, rows: int) -> list[dict]:
    features = frame.drop(columns=[TARGET]).head(rows)
    return json.loads(features.to_json(orient="records"))


def test_reference_encoders_turn_missing_text_into_the_string_missing(sample_frame: pd.DataFrame) -> None:
    frame = sample_frame.copy()
    frame.loc[0, "Teacher_Quality"] = None
    _, encoders = reference_train.encode(frame, TARGET)
    assert "missing" in encoders["Teacher_Quality"].classes_
    assert "Hours_Studied" not in encoders, "numeric columns are not label-encoded"


def test_reference_app_answers_one_record(reference_client, sample_frame: pd.DataFrame) -> None:
    reply = reference_client.post("/invocations", json=_records(sample_frame, 1)[0])
    assert reply.status_code == 200, reply.data
    assert len(reply.get_json()["predictions"]) == 1


def test_reference_app_answers_a_batch_with_a_missing_value(reference_client, sample_frame: pd.DataFrame) -> None:
    records = _records(sample_frame, 100)
    records[3]["Teacher_Quality"] = None
    reply = reference_client.post("/invocations", json=records)
    assert reply.status_code == 200, reply.data
    assert len(reply.get_json()["predictions"]) == 100


def test_noop_route_answers_a_constant_with_the_trace_headers() -> None:
    client = noop.create(max_body_bytes=1024).test_client()
    reply = client.post("/invocations", data=b'{"anything": 1}', content_type="application/json")
    assert reply.status_code == 200
    assert reply.data == noop.CONSTANT
    assert reply.headers["X-Model-Name"] == "noop"


def test_noop_server_runs_on_the_containers_gunicorn_command_line() -> None:
    spec = servers.noop(8123)
    assert "--config" in spec.argv and spec.argv[spec.argv.index("--config") + 1].endswith("gunicorn_conf.py")
    assert spec.argv[-1].startswith("benchmarks.noop:create(")
    assert spec.env["SAGEMAKER_GUNICORN_WORKERS"] == "1"


@pytest.mark.slow
def test_noop_server_starts_answers_and_reports_its_worker_memory(tmp_path: Path) -> None:
    port = servers.free_port()
    spec = servers.noop(port)
    server = servers.launch(spec, port, tmp_path / "noop.log", cpu=None)
    try:
        cold = servers.wait_ready(server, spec.body([{"x": 1}]), timeout_s=60)
        rss = servers.worker_rss(server)
    finally:
        servers.stop(server)
    assert cold > 0
    assert 10e6 < rss < 2e9, f"worker RSS {rss} bytes is implausible"
    assert server.process.returncode is not None


def test_mlflow_body_wraps_records_as_dataframe_records() -> None:
    spec = servers.mlflow("models:/m/1", "sqlite:///x.db", 8124)
    assert json.loads(spec.body([{"a": 1}])) == {"dataframe_records": [{"a": 1}]}
    assert json.loads(servers.ours(Path("/m"), 8125).body([{"a": 1}])) == [{"a": 1}]


def test_wrk_result_line_parses_into_rates_and_milliseconds() -> None:
    line = (load.MARKER + '{"requests": 2000, "duration_us": 2000000, "connect_errors": 0, "read_errors": 0, '
            '"write_errors": 0, "timeouts": 0, "non_2xx": 0, "p50_us": 3000, "p99_us": 9500, "max_us": 12000}')
    result = load.parse(f"Running 2s test\n{line}\n", rows_per_request=100)
    assert result.rps == 1000
    assert result.rows_per_s == 100_000
    assert result.p99_ms == 9.5
    assert result.errors == 0


def test_wrk_output_without_a_result_line_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no result line"):
        load.parse("unable to connect to 127.0.0.1:1\n", rows_per_request=1)


@pytest.mark.slow
def test_wrk_script_drives_a_real_server(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: `make test` installs it (make bench-deps)")
    port = servers.free_port()
    spec = servers.noop(port)
    body = tmp_path / "body.json"
    body.write_text('{"a": 1}')
    with servers.serving(spec, port, tmp_path / "noop.log", body.read_bytes(), cpu=None) as server:
        result = load.run_wrk(server.url, body, load.write_script(tmp_path), seconds=1, connections=2,
                              rows_per_request=1, cpu=None)
    assert result.requests > 0
    assert result.errors == 0


@pytest.mark.slow
def test_wrk_script_posts_every_body_it_is_given_in_turn(tmp_path: Path) -> None:
    """The soak's mixed load is the same script given two bodies: both must reach the server, in turn."""
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: `make test` installs it (make bench-deps)")
    seen: list[bytes] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    bodies = [tmp_path / "one.json", tmp_path / "two.json"]
    bodies[0].write_text('{"a": 1}')
    bodies[1].write_text('[{"a": 1}, {"a": 2}]')
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        argv = [load.wrk_path(), "-t1", "-c1", "-d1s", "-s", str(load.write_script(tmp_path)),
                f"http://127.0.0.1:{server.server_address[1]}/", "--", *map(str, bodies)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    finally:
        server.shutdown()
        server.server_close()

    assert load.parse(out, rows_per_request=1).requests > 1
    expected = [b.read_bytes() for b in bodies]
    assert set(seen) == set(expected)
    assert all(seen[i] != seen[i + 1] for i in range(len(seen) - 1))  # one connection: strictly in turn


def test_run_stops_in_one_line_when_wrk_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert bench_run.main(["--quick"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: wrk not found") and "apt-get install wrk" in err
    assert len(err.splitlines()) == 1


def _measurements(ours_rps: float) -> dict:
    def point(rps: float, rows: int = 1) -> dict:
        return {"rps": rps, "rows_per_s": rps * rows, "p50_ms": 1.0, "p99_ms": 4.0, "rps_min": rps, "rps_max": rps}

    return {
        "load": {"ours_1": point(ours_rps), "reference_1": point(100), "noop_1": point(800),
                 "ours_100": point(100, 100), "reference_100": point(5, 100)},
        "cold_start_s": {"ours": 1.0, "reference": 3.0, "mlflow": 10.0},
        "cold_start_range_s": {"ours": [0.9, 1.1]},
        "rss_mb": {"ours": 80.0, "reference": 200.0},
        "training": {"ours_logging_on": {"wall_s": 50.0, "mlflow_s": 1.0, "test_rmse": 2.0, "n_trials": 30},
                     "ours_logging_off": {"wall_s": 49.0, "test_rmse": 2.0, "n_trials": 30},
                     "reference": {"wall_s": 200.0, "test_rmse": 2.1, "n_trials": 50}},
    }


def test_targets_pass_and_miss_with_the_factor_missed() -> None:
    by_key = {t.key: t for t in report.targets(_measurements(ours_rps=500))}
    assert by_key["single_vs_reference"].verdict == "miss (2.00× off)", "500 vs 100 req/s is 5×, the goal 10×"
    assert by_key["single_vs_noop"].passed is True
    assert by_key["batch_vs_reference"].passed is True
    assert by_key["cold_vs_mlflow"].passed is True
    assert by_key["logging_share"].value == pytest.approx(0.02)


def test_results_table_renders_every_target_and_the_machine(tmp_path: Path) -> None:
    measurements = _measurements(ours_rps=1500)
    results = {"targets": [t.to_json() for t in report.targets(measurements)], "measurements": measurements,
               "machine": report.machine(),
               "run": {"mode": "quick", "reps": 1, "seconds": 2, "total_s": 60.0, "load_before": [1, 1, 1],
                       "load_after": [1, 1, 1]}}
    json_path, md_path = report.write(results, tmp_path)
    text = md_path.read_text()
    assert text.count("| pass |") + text.count("| miss") == 10, text
    assert "Machine:" in text and "xgboost" in text
    assert json.loads(json_path.read_text())["targets"][0]["key"] == "single_vs_reference"


def test_image_dependency_set_hides_what_the_serving_image_does_not_install() -> None:
    assert servers.hidden_modules() == ["pandas", "sklearn"], "serving/requirements.txt pins neither"
    env = {**servers.ours(Path("/m"), 8126).env, "PATH": "/usr/bin:/bin"}
    code = "import sys, xgboost; print(any(sys.modules.get(m) is not None for m in ('sklearn', 'pandas')))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr


def test_train_fraction_cuts_both_searches_in_proportion() -> None:
    plan = bench_run.FULL.scaled(0.2)
    assert plan.train_overrides["n_trials"] == round(0.2 * bench_training.default_trials())
    assert plan.reference_trials == 10
    assert bench_run.FULL.scaled(1.0) is bench_run.FULL


@pytest.mark.parametrize(("args", "message"), [
    (["--sizes", "abc"], "--sizes must be comma-separated row counts, got 'abc'"),
    (["--sizes", "50,6607"], "every table needs at least 100 rows"),
    (["--sizes", "6607,99999999999"], "99,999,999,999 rows is more than the generator makes"),
    (["--sizes", "6607,6607"], "names a row count twice: 6607,6607"),
])
def test_scale_benchmark_refuses_bad_sizes_before_training(args: list[str], message: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import scale

    assert scale.main([*args, "--results-dir", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message}" or (err.startswith("error: ") and message in err and "\n" not in err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("module", "option"), [
    ("run", "--results-dir"), ("batches", "--results-dir"), ("reliability", "--results-dir"),
    ("capture", "--results-dir"), ("drift", "--results-dir"), ("scale", "--results-dir"), ("workers", "--out"),
])
def test_every_benchmark_refuses_an_unusable_results_folder_before_it_measures(
        module: str, option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a results folder that cannot be made (a file stands where its parent should be)
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"
    # When the benchmark starts, then it stops at once, in one line naming the option and the folder
    assert importlib.import_module(f"benchmarks.{module}").main([option, str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {option} {out}: ") and "\n" not in err


@pytest.mark.parametrize(("module", "option", "args", "name"), [
    ("run", "--results-dir", ["--quick"], "quick.json"),
    ("batches", "--results-dir", ["--quick"], "batches-quick.md"),
    ("reliability", "--results-dir", ["--quick"], "reliability-quick.json"),
    ("capture", "--results-dir", ["--quick"], "capture-quick.md"),
    ("drift", "--results-dir", ["--quick"], "drift-quick.json"),
    ("scale", "--results-dir", ["--quick"], "scale-quick.json"),
    ("workers", "--out", [], "workers.md"),
])
def test_every_benchmark_refuses_a_results_file_that_is_a_folder_before_it_measures(
        module: str, option: str, args: list[str], name: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a results folder where a file the benchmark writes at its end is a folder
    out = tmp_path / "out"
    (out / name).mkdir(parents=True)
    # When the benchmark starts (it used to measure for minutes, then fail with IsADirectoryError)
    code = importlib.import_module(f"benchmarks.{module}").main([option, str(out), *args])
    # Then it stops at once, in one line naming the option, the folder and the file
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith(f"error: {option} {out}: {name} is not a regular file") and "\n" not in err, err
