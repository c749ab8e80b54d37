"""params.yaml's registry section: alias names MLflow would refuse are refused at load, in one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from core.cli import UserError
from core.params import load_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("alias", "previous", "message"), [
    ("production", "v1", "registry.previous_alias: Value error, 'v1' is reserved by MLflow"),
    ("LATEST", "previous", "registry.alias: Value error, 'LATEST' is reserved by MLflow"),
    ("prod uction", "previous", "registry.alias: String should match pattern"),
    ("production", "production", "alias and previous_alias are both 'production'"),
])
def test_an_alias_mlflow_would_refuse_is_refused_at_load(tmp_path: Path, alias: str, previous: str,
                                                        message: str) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["registry"].update(alias=alias, previous_alias=previous)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as err:
        load_params(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_default_aliases_load() -> None:
    registry = load_params(ROOT / "params.yaml").registry
    assert (registry.alias, registry.previous_alias) == ("production", "previous")


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("train", "n_trials", "5", "train.n_trials: Input should be a valid integer"),
    ("train", "n_trials", True, "train.n_trials: Input should be a valid integer"),
    ("train", "timeout_s", "900", "train.timeout_s: Input should be a valid number"),
    ("data", "test_size", "0.2", "data.test_size: Input should be a valid number"),
])
def test_a_number_written_as_text_or_a_boolean_is_refused_not_coerced(tmp_path: Path, section: str, key: str,
                                                                       value: object, message: str) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=message):
        load_params(path)


@pytest.mark.parametrize(("write", "message"), [
    (lambda p: p.write_bytes("# caf\u00e9\n".encode("latin-1") + (ROOT / "params.yaml").read_bytes()),
     "not UTF-8 text (byte 5); save it as UTF-8"),
    (lambda p: p.write_bytes((ROOT / "params.yaml").read_text().encode("utf-16")), "not UTF-8 text (byte 0)"),
    (lambda p: p.write_text("data: " + "[" * 3000 + "]" * 3000 + "\n"), "nested too deeply to be params"),
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: os.mkfifo(p), "not a regular file"),  # reading it would wait for a writer forever
], ids=["latin-1", "utf-16", "nested-3000-deep", "folder", "fifo"])
def test_a_params_file_that_cannot_be_read_as_yaml_text_is_one_line(tmp_path: Path, write, message: str) -> None:
    path = tmp_path / "params.yaml"
    write(path)
    with pytest.raises(UserError, match=r"^.*params\.yaml: ") as err:
        load_params(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_data_path_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    from core.lineage import dvc_data_hash

    fifo = tmp_path / "table.csv"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match=r"table\.csv: cannot read the data file \(not a regular file\)$"):
        dvc_data_hash(fifo, dvc_file=tmp_path / "data.dvc")


@pytest.mark.parametrize(("section", "value"), [("export", "dist/"), ("export", "dist/."), ("data", "data/"),
                                                ("export", "..")])
def test_a_file_path_written_as_a_folder_is_refused_at_load(tmp_path: Path, section: str, value: str) -> None:
    # pathlib drops the slash: export.path "dist/" wrote the tarball as a file named "dist"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw[section]["path"] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=f"{section}.path: .*names a folder, not a file") as err:
        load_params(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("extra", "key"), [("mlflow:\n  tracking_uri: sqlite:///other.db\n", "mlflow"),
                                             ("train:\n  n_trials: 3\n", "train")])
def test_a_key_written_twice_is_refused_as_dvc_refuses_it(tmp_path: Path, extra: str, key: str) -> None:
    # PyYAML kept the last silently: a second section replaced the first, while DVC refuses the file
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text() + extra)
    with pytest.raises(UserError, match=rf"key '{key}' is written twice \(line \d+\); keep one") as err:
        load_params(path)
    assert "\n" not in str(err.value)


def test_a_key_written_twice_inside_a_section_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "params.yaml").read_text()
    assert "\ntrain:\n" in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("\ntrain:\n", "\ntrain:\n  n_trials: 2\n  n_trials: 3\n", 1))
    with pytest.raises(UserError, match=r"key 'n_trials' is written twice"):
        load_params(path)


def _with_range(tmp_path: Path, booster: str, name: str, space: dict) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["search_space"][booster][name] = space
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(("booster", "name", "space", "message"), [
    ("gbtree", "min_child_weight", {"low": 1.0, "high": 1e39, "log": True},
     "gbtree: min_child_weight 1..1e+39 is outside XGBoost's [0, 3.40282e+38]"),
    ("gblinear", "reg_lambda", {"low": 1e39, "high": 1e39}, "gblinear: reg_lambda 1e+39..1e+39 is outside"),
    ("gbtree", "max_depth", {"low": 2, "high": 2**31, "int": True},
     "gbtree: max_depth 2..2147483648 is outside XGBoost's [0, 2147483647]"),
    ("gbtree", "max_bin", {"low": 2, "high": 2**32 + 5, "int": True}, "gbtree: max_bin 2..4294967301 is outside"),
])
def test_a_range_beyond_what_xgboost_parameters_hold_is_refused_at_load(tmp_path: Path, booster: str, name: str,
                                                                        space: dict, message: str) -> None:
    # XGBoost reads these parameters as float32 or int32: 1e39 or 2**31 failed the first trial with a traceback,
    # after MLflow had started the parent run (left FAILED)
    with pytest.raises(UserError) as err:
        load_params(_with_range(tmp_path, booster, name, space))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_an_nthread_beyond_int32_is_refused_at_load(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["nthread"] = 2**31
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"train\.nthread: Input should be less than or equal to 2147483647"):
        load_params(path)


def test_the_highest_bound_of_every_parameter_is_a_value_xgboost_trains_with() -> None:
    import numpy as np

    from core.params import BOOSTER_PARAMETERS, INTEGER_PARAMETERS, PARAMETER_BOUNDS
    from experiments import cv

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=40)
    for booster, names in BOOSTER_PARAMETERS.items():
        for name in sorted(names):
            high = PARAMETER_BOUNDS[name][1]
            value = int(high) if name in INTEGER_PARAMETERS else high
            cv.fit(x, y, {"booster": booster, name: value}, rounds=1, seed=0)  # raises if XGBoost refuses it


def test_a_number_with_an_exponent_is_read_as_dvc_reads_it(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) read 1e-3 and 1.0e3 as text and refused them as "not a valid number"; DVC reads
    # params.yaml as YAML 1.2, where both are floats (dvc params diff showed 0.001)
    from dvc.utils.serialize import parse_yaml

    text = (ROOT / "params.yaml").read_text()
    text = text.replace("reg_lambda: {low: 0.001, high: 10.0, log: true}", "reg_lambda: {low: 1e-3, high: 1E1, log: true}")
    text = text.replace("timeout_s: 900 ", "timeout_s: 9.0e2 ")
    assert "1e-3" in text and "9.0e2" in text
    path = tmp_path / "params.yaml"
    path.write_text(text)

    train = load_params(path).train
    dvc = parse_yaml(text, str(path))["train"]
    assert train.search_space.gbtree["reg_lambda"].low == dvc["search_space"]["gbtree"]["reg_lambda"]["low"] == 0.001
    assert train.search_space.gbtree["reg_lambda"].high == 10.0
    assert train.timeout_s == dvc["timeout_s"] == 900.0


def test_a_quoted_number_with_an_exponent_stays_text_and_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "params.yaml").read_text().replace("timeout_s: 900 ", 'timeout_s: "9e2" ')
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="train.timeout_s: Input should be a valid number"):
        load_params(path)


def test_an_empty_tracking_uri_is_refused_at_load(tmp_path: Path) -> None:
    # It passed, and training failed after the search's study was made, naming MLflow's deprecated file store
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["mlflow"]["tracking_uri"] = ""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"mlflow\.tracking_uri: String should have at least 1 character"):
        load_params(path)


@pytest.mark.parametrize(("section", "key"), [("registry", "gate_tolerance"), ("monitor.drift", "psi"),
                                              ("monitor.drift", "wasserstein"), ("monitor.feedback", "rmse_tolerance")])
def test_an_infinite_tolerance_or_threshold_is_refused_not_a_gate_or_alarm_that_never_acts(
        tmp_path: Path, section: str, key: str) -> None:
    # `.inf` (or 1e999, a float to YAML 1.2) passed: the gate let every candidate by as judged, an alarm never rang
    text = (ROOT / "params.yaml").read_text()
    raw = yaml.safe_load(text)
    part = raw
    for name in section.split("."):
        part = part[name]
    part[key] = float("inf")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=rf"{section}\.{key}: Input should be a finite number"):
        load_params(path)


@pytest.mark.parametrize(("written", "read"), [("042", 42), ("0o17", 15), ("1_000", 1000), ("0x1F", 31)])
def test_an_integer_is_read_as_dvc_reads_it(tmp_path: Path, written: str, read: int) -> None:
    # PyYAML (YAML 1.1) read `split_seed: 042` as octal 34: the split was not the one `dvc params diff` showed
    from dvc.utils.serialize import parse_yaml

    text = (ROOT / "params.yaml").read_text().replace("split_seed: 42\n", f"split_seed: {written}\n")
    assert f"split_seed: {written}\n" in text
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert load_params(path).data.split_seed == parse_yaml(text, str(path))["data"]["split_seed"] == read


def test_a_time_written_as_minutes_is_text_as_dvc_reads_it_and_refused(tmp_path: Path) -> None:
    # YAML 1.1 read `timeout_s: 15:00` as 900 (base 60); DVC reads the text "15:00"
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text().replace("timeout_s: 900 ", "timeout_s: 15:00 "))
    with pytest.raises(UserError, match="train.timeout_s: Input should be a valid number"):
        load_params(path)


@pytest.mark.parametrize("written", ["yes", "on", "Y"])
def test_a_yaml_1_1_boolean_is_text_as_dvc_reads_it_and_refused(tmp_path: Path, written: str) -> None:
    # YAML 1.1 read `log: yes` as true: a log-scale search that `dvc params diff` showed as the text "yes"
    from dvc.utils.serialize import parse_yaml

    text = (ROOT / "params.yaml").read_text()
    text = text.replace("reg_lambda: {low: 0.001, high: 10.0, log: true}", f"reg_lambda: {{low: 0.001, high: 10.0, log: {written}}}")
    assert f"log: {written}}}" in text
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert parse_yaml(text, str(path))["train"]["search_space"]["gbtree"]["reg_lambda"]["log"] == written
    with pytest.raises(UserError, match=r"reg_lambda\.log: Input should be a valid boolean"):
        load_params(path)


def test_a_base_60_float_is_text_as_dvc_reads_it_and_refused(tmp_path: Path) -> None:
    # YAML 1.1 read `timeout_s: 15:00.5` as 900.5 (base 60); DVC reads the text
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text().replace("timeout_s: 900 ", "timeout_s: 15:00.5 "))
    with pytest.raises(UserError, match="train.timeout_s: Input should be a valid number"):
        load_params(path)
