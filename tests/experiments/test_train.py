"""The train stage against a real MLflow SQLite store: trials, the registered version, lineage and bad input."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from core.cli import UserError
from core.params import load_params
from core.stopwatch import Stopwatch
from experiments import cv, search
from experiments import train as train_module
from experiments import trials as tracking
from experiments.data import prepare
from tests.conftest import FAST_TRAIN, ROOT, write_params

pytestmark = pytest.mark.slow


def _client(folder: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def _registered_versions(folder: Path) -> list:
    if not (folder / "mlflow.db").exists():
        return []
    return _client(folder).search_model_versions("name = 'student-score'")


def test_every_trial_is_a_child_run_and_the_best_model_is_registered(workdir: Path, sample_csv: Path) -> None:
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN)

    code = train_module.main(["--params", str(params_file)])

    assert code == 0
    client = _client(workdir)
    experiment = client.get_experiment_by_name("student-score")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert len(children) == FAST_TRAIN["n_trials"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["optuna.trial_state"] in ("COMPLETE", "PRUNED")
        assert child.data.params["booster"] in ("gbtree", "gblinear")
        assert child.data.tags["booster"] == child.data.params["booster"]  # to filter and colour runs by in the UI
        assert child.info.status == "FINISHED"
        if child.data.tags["optuna.trial_state"] == "COMPLETE":
            assert child.data.metrics["cv_rmse"] > 0
    for key in ("test_rmse", "test_mse", "test_mae", "test_r2", "baseline_rmse", "cv_rmse"):
        assert key in parent.data.metrics, key
    import hashlib
    own = hashlib.md5(sample_csv.read_bytes(), usedforsecurity=False).hexdigest()
    assert parent.data.tags["data_hash"] == f"md5:{own}", "no data.dvc here: the CSV's own content hash"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert artifacts == {f"plots/{n}.png" for n in ("predicted_vs_actual", "residuals", "feature_importance",
                                                    "optimisation_history")}
    assert parent.inputs.dataset_inputs, "the training table is logged as an MLflow dataset input"
    assert "profile.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}, "the reference profile"
    profile = json.loads((workdir / "model" / "profile.json").read_text())
    schema = json.loads((workdir / "model" / "schema.json").read_text())
    assert set(profile["features"]) == {f["name"] for f in schema["features"]}
    # The dataset input declares its columns as the model's signature does (not inferred from rows), and its size.
    (dataset,) = [d.dataset for d in parent.inputs.dataset_inputs]
    columns = json.loads(dataset.schema)["mlflow_colspec"]
    signature = mlflow.models.get_model_info(f"runs:/{parent.info.run_id}/model").signature
    assert columns == [*signature.inputs.to_dict(), {"type": "long", "name": schema["target"], "required": True}]
    assert json.loads(dataset.profile)["num_rows"] == len(sample_csv.read_text().splitlines()) - 1
    assert profile["prediction"]["count"] == len((workdir / "plots" / "predictions.csv").read_text().splitlines()) - 1

    (version,) = _registered_versions(workdir)
    assert version.run_id == parent.info.run_id
    for tag in ("data_hash", "git_commit", "run_id", "test_rmse", "study"):
        assert version.tags[tag], tag
    assert float(version.tags["test_rmse"]) == pytest.approx(parent.data.metrics["test_rmse"], abs=1e-5)

    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["test"]["rmse"] == pytest.approx(parent.data.metrics["test_rmse"], abs=1e-4)
    assert metrics["trials"]["complete"] + metrics["trials"]["pruned"] == FAST_TRAIN["n_trials"]
    assert (workdir / "plots" / "predictions.csv").read_text().startswith("actual,predicted\n")


def test_registered_model_serves_raw_records_through_pyfunc(workdir: Path, sample_csv: Path) -> None:
    import pandas as pd

    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train_module.main(["--params", str(params_file)]) == 0
    assert not [w for w in caught if "type hint" in str(w.message)], "the pyfunc's predict is annotated"
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/student-score/1")
    rows = pd.read_csv(sample_csv).drop(columns=["Exam_Score"]).head(5)
    rows.loc[0, "Teacher_Quality"] = None

    predictions = model.predict(rows)

    from serving.predictor import Predictor, records_from_frame
    direct = Predictor.from_dir(workdir / "model").predict(records_from_frame(rows))
    assert len(predictions) == 5
    assert max(abs(a - b) for a, b in zip(predictions, direct, strict=True)) < 1e-6
    files = {p.name for p in (workdir / "model").iterdir()}
    assert files == {"booster.ubj", "schema.json", "profile.json"}, "no pickles: the booster in XGBoost's format and JSON"


def test_same_seed_gives_same_best_params(tmp_path: Path, sample_csv: Path, monkeypatch) -> None:
    results = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        params = load_params(write_params(folder, sample_csv, train=FAST_TRAIN))
        results.append(train_module.train(params, log=False))
    assert results[0].best_params == results[1].best_params
    assert results[0].metrics["test_rmse"] == pytest.approx(results[1].metrics["test_rmse"], abs=1e-9)


def test_training_without_logging_never_touches_mlflow(tmp_path: Path, sample_csv: Path, monkeypatch) -> None:
    """What the benchmark prices logging against: the same stage outputs, and no tracking store at all."""
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path, sample_csv, train=FAST_TRAIN))
    result = train_module.train(params, log=False)
    assert (result.version, result.run_id) == ("unregistered", None)
    assert (tmp_path / "model" / "booster.ubj").is_file() and (tmp_path / "metrics.json").is_file()
    assert not (tmp_path / "mlflow.db").exists(), "logging off must not create the tracking store"
    # And a logged training afterwards runs and logs its own trials: it never resumes the unlogged study.
    logged = train_module.train(params)
    client = MlflowClient(params.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(params.mlflow.experiment).experiment_id
    assert len(tracking.trial_runs(client, experiment, logged.run_id)) == params.train.n_trials
    assert logged.study_name != result.study_name
    # What logging cost, part by part: every step that calls MLflow is on the clock, and the parts are the whole.
    assert (result.mlflow_s, result.mlflow_parts) == (0.0, {})
    assert set(logged.mlflow_parts) == {"set-up", "trial runs", "parent run", "figures", "model", "registry"}
    assert all(seconds > 0 for seconds in logged.mlflow_parts.values()), logged.mlflow_parts
    assert logged.mlflow_s == pytest.approx(sum(logged.mlflow_parts.values()))


def test_fold_scores_do_not_depend_on_how_many_folds_train_at_once(sample_csv: Path, tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, sample_csv, train=FAST_TRAIN | {"cv_folds": 3}))
    data = prepare(params)
    sampled = {"booster": "gbtree", "max_depth": 3, "learning_rate": 0.3, "subsample": 0.8}
    scores = {}
    for threads in (1, 2, 3):
        cfg = params.train.model_copy(update={"nthread": threads})
        reported: dict[int, float] = {}
        result = cv.cross_validate(cv.Folds(data.x_train, data.y_train, cfg), sampled, cfg,
                                       reported.__setitem__)
        scores[threads] = (result, reported)
    assert scores[1] == scores[2] == scores[3]
    assert list(scores[2][1]) == [0, 1, 2], "folds are reported in order"


def test_an_interrupted_training_resumes_its_study_and_parent_run(workdir: Path, sample_csv: Path) -> None:
    """Given a training killed after some trials, when it runs again, then it finishes the same study."""
    import optuna

    slow = FAST_TRAIN | {"n_trials": 8, "max_rounds": 300, "early_stopping_rounds": 300, "pruner_startup_trials": 8}
    params_file = write_params(workdir, sample_csv, train=slow)
    params = load_params(params_file)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "experiments.train", "--params", str(params_file)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = search.make_storage(params.train.storage)
    deadline = time.monotonic() + 240
    finished = 0
    while finished < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        studies = optuna.get_all_study_summaries(storage) if (workdir / "optuna.journal").exists() else []
        finished = max((s.n_trials for s in studies), default=0)
    proc.kill()
    proc.wait()
    assert 2 <= finished < 8, f"killed after {finished} trials: the test needs an unfinished study"

    result = train_module.train(params)

    study = optuna.load_study(study_name=result.study_name, storage=storage)
    states = [t.state for t in study.trials]
    assert sum(s.is_finished() and s != optuna.trial.TrialState.FAIL for s in states) >= 8
    assert study.user_attrs[search.PARENT_RUN_ATTR] == result.run_id
    children = [r for r in _client(workdir).search_runs([_client(workdir).get_run(result.run_id).info.experiment_id])
                if r.data.tags.get("mlflow.parentRunId") == result.run_id]
    assert len(children) >= 8, "the trials before the kill and after it sit under one parent run"


def test_rerunning_a_finished_study_registers_nothing_new(workdir: Path, sample_csv: Path, capsys) -> None:
    params = load_params(write_params(workdir, sample_csv, train=FAST_TRAIN))
    first = train_module.train(params)
    (workdir / "metrics.json").unlink()

    again = train_module.train(params)

    assert again.version == first.version
    assert len(_registered_versions(workdir)) == 1
    assert (workdir / "metrics.json").is_file(), "the stage's outputs are written again for DVC"
    assert "registered as student-score version 1; rewriting outputs only" in capsys.readouterr().out


def test_a_study_whose_parent_run_is_gone_starts_a_new_run(workdir: Path, sample_csv: Path) -> None:
    """Given the same study but another tracking store (the old run is not there), training still works."""
    params = load_params(write_params(workdir, sample_csv, train=FAST_TRAIN))
    train_module.train(params)
    moved = params.model_copy(update={"mlflow": params.mlflow.model_copy(
        update={"tracking_uri": f"sqlite:///{workdir / 'other.db'}"})})

    result = train_module.train(moved)

    assert result.version == "1"
    assert MlflowClient(moved.mlflow.tracking_uri).get_run(result.run_id).info.status == "FINISHED"


def test_the_stage_leaves_its_imports_to_the_collector_only_while_it_runs(workdir: Path, sample_csv: Path,
                                                                         monkeypatch) -> None:
    """Frozen while training (the imports, then MLflow's SQL store), thawed after, also when the stage fails."""
    gc.unfreeze()
    frozen_at = {}
    real_prepare, real_record = train_module.prepare, train_module.parent_run.record

    def prepare(params):  # noqa: ANN001, ANN202
        frozen_at["start"] = gc.get_freeze_count()
        return real_prepare(params)

    def record(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        frozen_at["logging"] = gc.get_freeze_count()
        return real_record(*args, **kwargs)

    monkeypatch.setattr(train_module, "prepare", prepare)
    monkeypatch.setattr(train_module.parent_run, "record", record)
    train_module.train(load_params(write_params(workdir, sample_csv, train=FAST_TRAIN)))

    assert frozen_at["start"] > 0
    assert frozen_at["logging"] > frozen_at["start"], "MLflow's SQL store, imported after the start, is frozen too"
    assert gc.get_freeze_count() == 0
    with pytest.raises(UserError, match="data file not found"):
        train_module.train(load_params(write_params(workdir, workdir / "absent.csv")))
    assert gc.get_freeze_count() == 0
    # A caller that froze objects itself keeps them frozen: the stage neither thaws them nor adds its own, whether
    # it fails before MLflow is set up or trains to the end (frozen objects may die meanwhile, none are added).
    gc.freeze()
    try:
        callers = gc.get_freeze_count()
        with pytest.raises(UserError, match="data file not found"):
            train_module.train(load_params(write_params(workdir, workdir / "absent.csv")))
        assert gc.get_freeze_count() == callers
        train_module.train(load_params(write_params(workdir, sample_csv, train=FAST_TRAIN)))
        assert 0 < gc.get_freeze_count() <= callers
    finally:
        gc.unfreeze()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BAD_INPUTS = {
    "missing CSV": (lambda d: d / "absent.csv", {}, "data file not found"),
    "empty CSV": (lambda d: _write(d, ""), {}, "the CSV is empty"),
    "missing target column": (lambda d: _write(d, "a,b\n1,2\n"), {}, "target column 'Exam_Score' not found"),
    "non-numeric target": (lambda d: _write(d, "a,Exam_Score\n1,2\n2,lots\n"), {}, "must be numeric"),
    "missing target value": (lambda d: _write(d, "a,Exam_Score\n1,2\n2,\n"), {}, "is missing on line 3"),
    "entirely empty feature": (lambda d: _write(d, "a,b,Exam_Score\n1,,2\n2,,3\n"), {}, "entirely empty"),
    "mixed types": (lambda d: _write(d, "a,Exam_Score\n1,2\nx,3\n"), {}, "mixes numbers and text"),
    "too few rows": (lambda d: _write(d, "a,Exam_Score\n1,2\n2,3\n3,4\n"), {}, "too few rows to split"),
}


def _write(folder: Path, text: str) -> Path:
    path = folder / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_data_exits_non_zero_in_one_line_and_registers_nothing(case: str, workdir: Path, capsys) -> None:
    make_csv, overrides, message = BAD_INPUTS[case]
    params_file = write_params(workdir, make_csv(workdir), **overrides)

    code = train_module.main(["--params", str(params_file)])

    err = capsys.readouterr().err
    assert code != 0
    assert message in err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    assert _registered_versions(workdir) == []


def test_unreachable_tracking_server_is_one_line(workdir: Path, sample_csv: Path, capsys, monkeypatch) -> None:
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")

    code = train_module.main(["--params", str(params_file)])

    err = capsys.readouterr().err
    assert code == 1
    assert "is unreachable" in err and err.count("\n") == 1
    assert not (workdir / "model").exists(), "nothing trained or written"


@pytest.mark.parametrize(("text", "message"), [
    ("data: [unclosed\n", "not valid YAML at line"),
    ("- just\n- a list\n", "expected a mapping of sections"),
    (None, "train.n_trials: Input should be greater than or equal to 1"),
    (None, "train.bogus: Extra inputs are not permitted"),
    (None, "unknown XGBoost parameter(s) ['max_dept']"),
])
def test_malformed_params_are_one_line(workdir: Path, sample_csv: Path, capsys, text, message) -> None:
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN)
    if text is None:
        override = {"n_trials": 0} if "n_trials" in message else {"bogus": 1}
        if "max_dept" in message:
            space = yaml.safe_load(params_file.read_text())["train"]["search_space"]
            space["gbtree"]["max_dept"] = {"low": 2, "high": 4, "int": True}
            override = {"search_space": space}
        params_file = write_params(workdir, sample_csv, train=FAST_TRAIN | override)
    else:
        params_file.write_text(text)

    code = train_module.main(["--params", str(params_file)])

    err = capsys.readouterr().err
    assert code == 1
    assert message in err and err.count("\n") == 1, err
    assert _registered_versions(workdir) == []


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("gbtree", "subsample", {"low": 1.5, "high": 2.0}, "gbtree: subsample 1.5..2 is outside XGBoost's (0, 1]"),
    ("gbtree", "colsample_bytree", {"low": 0.0, "high": 1.0}, "colsample_bytree 0..1 is outside XGBoost's (0, 1]"),
    ("gblinear", "learning_rate", {"low": 0.5, "high": 2.0}, "learning_rate 0.5..2 is outside XGBoost's [0, 1]"),
    ("gbtree", "reg_alpha", {"low": -1.0, "high": 1.0}, "reg_alpha -1..1 is outside XGBoost's [0, 3.40282e+38]"),
    ("train", "seed", -1, "train.seed: Input should be greater than or equal to 0"),
    ("data", "split_seed", 2**32, "data.split_seed: Input should be less than 4294967296"),
    ("gbtree", "max_depth", {"low": 2, "high": 8}, "gbtree: max_depth takes whole numbers; add int: true"),
    ("gbtree", "max_bin", {"low": 16.5, "high": 64, "int": True}, "an int range needs whole-number bounds, got 16.5..64"),
    ("gbtree", "max_depth", {"low": 0.5, "high": 8, "int": True, "log": True}, "needs whole-number bounds"),
    ("gbtree", "gamma", {"low": 0.0, "high": float("inf")}, "Input should be a finite number"),
    ("gblinear", "reg_lambda", {"low": float("nan"), "high": 1.0}, "Input should be a finite number"),
])
def test_values_xgboost_or_numpy_would_refuse_are_one_line_before_mlflow(workdir: Path, sample_csv: Path, capsys,
                                                                         section, key, value, message) -> None:
    # Given params with a search range XGBoost refuses, or a seed numpy refuses
    raw = yaml.safe_load(write_params(workdir, sample_csv, train=FAST_TRAIN).read_text())
    target = raw[section] if section in ("train", "data") else raw["train"]["search_space"][section]
    target[key] = value
    params_file = workdir / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    # When training starts, then it stops in one line before MLflow records anything
    assert train_module.main(["--params", str(params_file)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (workdir / "mlflow.db").exists(), "nothing logged, not even a failed run"


@pytest.mark.parametrize("kind", ["journal-under-a-file", "sqlite-in-no-folder", "not-a-url", "database-down",
                                  "journal-with-a-damaged-line", "not-a-journal", "journal-a-fifo"])
def test_an_optuna_storage_that_cannot_be_used_is_one_line_before_mlflow(workdir: Path, sample_csv: Path, capsys,
                                                                         kind: str) -> None:
    # Given a storage that cannot be used: a journal whose folder is a file, SQLite in a missing folder, a
    # malformed URL, or a team's PostgreSQL that is down (a closed port; the password must not be shown)
    (workdir / "a-file").write_text("x")
    storage = {"journal-under-a-file": f"journal:{workdir / 'a-file' / 'optuna.journal'}",
               "sqlite-in-no-folder": f"sqlite:///{workdir / 'no-such-folder' / 'optuna.db'}",
               "not-a-url": "bogus",
               "database-down": f"postgresql+psycopg://team:s3cret@127.0.0.1:{_closed_port()}/optuna",
               "journal-with-a-damaged-line": f"journal:{workdir / 'damaged.journal'}",
               "not-a-journal": f"journal:{workdir / 'a-file'}",
               "journal-a-fifo": f"journal:{workdir / 'fifo'}"}[kind]
    if kind == "journal-a-fifo":  # opening it to append would wait for a reader for ever
        os.mkfifo(workdir / "fifo")
    if kind == "journal-with-a-damaged-line":  # a study's journal, then a line that is not Optuna's
        search.make_study(name="earlier", storage=storage, seed=1, startup_trials=1)
        with (workdir / "damaged.journal").open("a") as journal:
            journal.write("garbage\n")
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN)
    # When training starts with it, then one line names the storage and nothing reached MLflow
    assert train_module.main(["--params", str(params_file), "--storage", storage]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Optuna storage ") and err.count("\n") == 1, err
    assert "s3cret" not in err
    assert not (workdir / "mlflow.db").exists()
    assert (workdir / "a-file").read_text() == "x", "Optuna wrote nothing into a file that is not its journal"


def test_the_stopwatch_adds_up_each_part_and_refuses_a_part_inside_another() -> None:
    clock = Stopwatch()
    for _ in range(2):
        with clock.part("a"):
            time.sleep(0.01)
    clock.timed("b", lambda *args: time.sleep(0.01))("study", "trial")
    assert set(clock.parts) == {"a", "b"}
    assert clock.parts["a"] >= 0.02 and clock.parts["b"] >= 0.01
    result = train_module.TrainResult(run_id="r", version="1", study_name="s", metrics={}, best_params={},
                                      mlflow_parts=dict(clock.parts))
    assert result.mlflow_s == pytest.approx(clock.parts["a"] + clock.parts["b"])
    with clock.part("a"), pytest.raises(RuntimeError, match="inside 'a'"):  # noqa: SIM117 - the order matters
        with clock.part("b"):
            pass
    with pytest.raises(ValueError, match="still counted"), clock.part("c"):
        raise ValueError("a failing step is still counted")
    assert "c" in clock.parts


@pytest.mark.filterwarnings("error")
def test_a_target_too_large_for_float32_arithmetic_is_one_line_before_the_search(workdir: Path, capsys) -> None:
    # Given a target within float32 (the table allows it) whose values overflow the linear baseline's float32 fit:
    # it was a ValueError traceback after the whole search, with MLflow's run left FAILED
    rows = "".join(f"{i},{'abc'[i % 3]},{(50 + i) * 3e36:.6g}\n" for i in range(30))
    params_file = write_params(workdir, _write(workdir, "a,b,Exam_Score\n" + rows), train=FAST_TRAIN)

    assert train_module.main(["--params", str(params_file)]) == 1

    err = capsys.readouterr().err
    assert "target 'Exam_Score' is too large to fit in float32" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in workdir.iterdir()) == ["bad.csv", "params.yaml"], "no study, no run, no outputs"
