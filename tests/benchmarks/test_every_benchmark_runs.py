"""Every benchmark module imports, and every benchmark command runs end to end in its quick mode.

A rename elsewhere in the project must fail here, not strand a benchmark until someone runs it by hand. No
timing is asserted: the figures are `make bench`'s, never a test's.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from tests.benchmarks.conftest import assert_run_recorded

ROOT = Path(__file__).resolve().parents[2]
# The reference app unpickles its model at import, like the reference container; test_building_blocks loads it.
NEEDS_A_MODEL = {"benchmarks.reference.app"}


def _benchmark_modules() -> list[str]:
    names = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        if "container_site" in path.parts or "__pycache__" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("name", [n for n in _benchmark_modules() if n not in NEEDS_A_MODEL])
def test_every_benchmark_module_imports(name: str) -> None:
    module = importlib.import_module(name)
    if hasattr(module, "cli"):
        assert callable(getattr(module, "main", None)), f"{name} has a command but no main(argv)"


@pytest.mark.slow
def test_make_bench_quick_runs_every_measurement(tmp_path: Path) -> None:
    from benchmarks import run

    assert run.main(["--quick", "--results-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "quick.json").read_text())
    assert_run_recorded(results["run"], "quick")
    trained = results["measurements"]["training"]
    assert {"ours_logging_on", "ours_logging_off", "reference"} <= set(trained)
    assert trained["ours_logging_on"]["mlflow_s"] > 0, "the stage reports what logging cost"
    assert trained["ours_logging_off"]["mlflow_s"] == 0
    measured = results["measurements"]
    servers = {"ours", "reference", "mlflow"}
    assert set(measured["cold_start_s"]) == set(measured["rss_mb"]) == servers
    assert all(measured["cold_start_s"][s] > 0 and measured["rss_mb"][s] > 0 for s in servers)
    assert set(measured["load"]) == {"ours_1", "reference_1", "noop_1", "ours_100", "reference_100"}
    assert all(point["rps"] > 0 and point["p99_ms"] > 0 for point in measured["load"].values())
    assert "n/a" not in (tmp_path / "quick.md").read_text(), "every cell of the report was measured"


@pytest.mark.slow
def test_make_bench_workers_quick_runs_one_and_two_workers(tmp_path: Path) -> None:
    from benchmarks import workers

    assert workers.main(["--trials", "4", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "workers.json").read_text())
    assert [r["workers"] for r in result["runs"]] == [1, 2, 1]
    assert all(r["trials"] == 4 for r in result["runs"])


@pytest.mark.slow
def test_make_bench_scale_quick_trains_at_each_size_and_against_the_idiom(tmp_path: Path) -> None:
    from benchmarks import scale

    assert scale.main(["--quick", "--results-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "scale-quick.json").read_text())
    assert [s["rows"] for s in result["sizes"]] == list(scale.QUICK_SIZES)
    first, last = result["sizes"]
    assert {"on", "off", "idiom_on", "idiom_off"} <= set(first), "the idiom is measured at the smallest size"
    assert last["dvc_repro"]["wall_s"] > 0 and last["dvc_repro"]["test_rmse"] > 0, "a real dvc repro at the top"
    assert all(s["floor_rmse"] > 0 and s["on"]["peak_rss_mb"] > 0 for s in result["sizes"])
    assert {t["key"] for t in result["targets"]} >= {"repro_wall", "peak_rss", "rmse_vs_floor", "logging_vs_idiom"}
    for size in result["sizes"]:  # where MLflow's seconds go, part by part, adding up to the whole
        assert sum(size["on"]["mlflow_parts"].values()) == pytest.approx(size["on"]["mlflow_s"])
    assert "the same without set-up |" in (tmp_path / "scale-quick.md").read_text()
    assert_run_recorded(result["run"], "quick")


@pytest.mark.slow
def test_make_bench_reliability_quick_runs_every_part(tmp_path: Path) -> None:
    from benchmarks import reliability

    assert reliability.main(["--quick", "--results-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "reliability-quick.json").read_text())
    assert results["run"]["mode"] == "quick"
    fuzzed = results["fuzz"]
    assert fuzzed["in_process"]["tried"] >= 150 and fuzzed["through_chain"]["tried"] >= 30
    assert sum(f["server_errors"] for f in fuzzed.values() if isinstance(f, dict)) == 0
    assert set(results["load"]) >= {"soak", "ours", "gunicorn sync", "sigkill_worker_of_1", "sigkill_worker_of_2"}
    assert results["load"]["ours"]["ping_behind_busy_backlog"]["status"] == "200"
    assert all(t["refused"] for t in results["tarballs"].values())
    assert results["faults"]["promote"] and results["faults"]["training"]["versions"] == 1
    assert "| hostile tarballs |" in (tmp_path / "reliability-quick.md").read_text()


@pytest.mark.slow
def test_make_bench_batches_quick_measures_both_servers_and_the_limits(tmp_path: Path) -> None:
    from benchmarks import batches

    assert batches.main(["--quick", "--results-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "batches-quick.json").read_text())
    assert_run_recorded(results["run"], "quick")
    assert results["run"]["rows"] == 10_000
    assert {"ours_json_records", "reference_json_records", "ours_dataframe_split", "ours_csv"} == \
        set(results["throughput"])
    assert results["targets"][0]["value"] > 0
    for shape, check in results["limits"].items():
        assert (check["status"], check["one_more_status"]) == (200, 413), shape
        assert check["records"] == results["payloads"][shape]["6 MiB"]["records"]
    assert "| json_records |" in (tmp_path / "batches-quick.md").read_text()
