"""A corrupt booster is refused in one line before XGBoost's reader, which would crash the process, sees it."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from serving import booster_file, wsgi
from serving.booster_file import MalformedBooster
from serving.layout import BOOSTER_FILE, ModelError
from serving.predictor import Predictor
from tests.serving.serving_helpers import build_model_dir

CORRUPTIONS = 300


def _corrupt(raw: bytes, seed: int) -> bytes:
    rnd = random.Random(seed)
    data = bytearray(raw)
    for _ in range(rnd.randint(1, 4)):
        data[rnd.randrange(len(data))] = rnd.randrange(256)
    return bytes(data)


@pytest.mark.parametrize("kind", ["gbtree", "gblinear", "dart"])
def test_boosters_xgboost_writes_pass(kind: str) -> None:
    rng = np.random.default_rng(0)
    model = xgb.train({"booster": kind, "nthread": 1}, xgb.DMatrix(rng.random((200, 12)), label=rng.random(200)), 30)

    booster_file.check(bytes(model.save_raw("ubj")))


def test_the_bundle_booster_passes(model_dir: Path) -> None:
    booster_file.check((model_dir / BOOSTER_FILE).read_bytes())


# A child process loads and predicts with every corruption the check lets through; before the check, 39 of
# 400 such corruptions killed the process with SIGSEGV.
_PROBE = """
import sys, numpy as np, xgboost as xgb
for path in sys.argv[1:]:
    print(path, flush=True)
    model = xgb.Booster()
    try:
        model.load_model(path)
        model.set_param({"nthread": 1})
        model.save_config()
        model.inplace_predict(np.random.default_rng(0).random((64, model.num_features()), dtype=np.float32))
    except Exception:
        pass
print("survived", flush=True)
"""


@pytest.mark.slow
def test_no_corruption_the_check_accepts_crashes_xgboost(model_dir: Path, tmp_path: Path) -> None:
    raw = (model_dir / BOOSTER_FILE).read_bytes()
    accepted = []
    for seed in range(CORRUPTIONS):
        data = _corrupt(raw, seed)
        try:
            booster_file.check(data)
        except MalformedBooster:
            continue
        path = tmp_path / f"corrupt-{seed}.ubj"
        path.write_bytes(data)
        accepted.append(str(path))
    assert len(accepted) < CORRUPTIONS / 2, "the corruptions mostly break the structure the check reads"

    done = subprocess.run([sys.executable, "-c", _PROBE, *accepted], capture_output=True, text=True, timeout=300,
                          check=False)

    last = (done.stdout.strip().splitlines() or ["(none)"])[-1]
    assert done.returncode == 0 and last == "survived", f"XGBoost crashed ({done.returncode}) on {last}"


@pytest.mark.parametrize("seed", [12, 21, 39, 64])  # seeds whose corruption crashed XGBoost before the check
def test_a_corrupt_booster_is_one_line_at_load_and_a_503_in_the_container(model_dir: Path, tmp_path: Path,
                                                                          seed: int) -> None:
    folder = build_model_dir(tmp_path / "model")
    (folder / BOOSTER_FILE).write_bytes(_corrupt((folder / BOOSTER_FILE).read_bytes(), seed))
    from serving import bundle
    bundle.write_metadata(folder, json.loads((folder / "metadata.json").read_text()))  # checksums now agree

    with pytest.raises(ModelError, match="booster.ubj is not a valid XGBoost model") as err:
        Predictor.from_dir(folder)
    assert "\n" not in str(err.value)

    ping = wsgi.create(str(folder), 1024).test_client().get("/ping")
    assert ping.status_code == 503
    assert "not a valid XGBoost model" in ping.get_json()["error"]
    assert "UnicodeDecodeError" not in ping.get_json()["error"]


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "does not start"), (b"[]", "does not start"), (b"{}{}", "stray bytes"),
    (b"{L\x00\x00\x00\x00\x00\x00\x00\x01a" + b"[" * 100, "nested deeper"),
    (b"{L\x7f\xff\xff\xff\xff\xff\xff\xffa", "truncated"), (b"{}", "missing 'learner'"),
])
def test_malformed_files_are_named(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedBooster, match=reason):
        booster_file.check(data)


def _ubjson(value: object) -> bytes:
    """UBJSON as XGBoost writes it (lengths as int64, typed arrays big-endian): enough to re-encode a decoded model."""
    def length(n: int) -> bytes:
        return b"L" + n.to_bytes(8, "big", signed=True)

    if isinstance(value, dict):
        return b"{" + b"".join(length(len(k.encode())) + k.encode() + _ubjson(v) for k, v in value.items()) + b"}"
    if isinstance(value, np.ndarray):
        marker = {"i1": b"i", "u1": b"U", "i2": b"I", "i4": b"l", "i8": b"L", "f4": b"d", "f8": b"D"}[
            value.dtype.str[1:]]
        return b"[$" + marker + b"#" + length(len(value)) + value.astype(value.dtype.newbyteorder(">")).tobytes()
    if isinstance(value, list):
        return b"[#" + length(len(value)) + b"".join(_ubjson(v) for v in value)
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, int):
        return b"L" + value.to_bytes(8, "big", signed=True)
    if isinstance(value, float):
        return b"D" + np.array(value, ">f8").tobytes()
    if isinstance(value, str):
        return b"S" + length(len(value.encode())) + value.encode()
    raise TypeError(type(value))


def _trees(model: dict) -> dict:
    return model["learner"]["gradient_booster"]["model"]


def _categorical_split_past_its_categories(model: dict) -> None:
    tree = _trees(model)["trees"][0]
    tree["split_type"] = np.array([1] + [0] * (len(tree["split_type"]) - 1), ">u1")
    tree["categories_nodes"], tree["categories"] = np.array([0], ">i4"), np.array([], ">i4")
    tree["categories_segments"], tree["categories_sizes"] = np.array([10**6], ">i8"), np.array([50], ">i8")


# Each passed the check before (a hostile review's finds). The first three kill XGBoost every time (SIGSEGV or
# SIGABRT); an output group past the model's writes past XGBoost's output buffer, which crashed one run in three
# here and silently corrupted the heap in the others; falling iteration bounds are simply wrong.
FIELD_CORRUPTIONS = {
    "vector leaves": (lambda m: _trees(m)["trees"][0]["tree_param"].update(size_leaf_vector="3"),
                      "size_leaf_vector", True),
    "a negative output group": (lambda m: _trees(m)["tree_info"].__setitem__(0, -5), "tree_info", True),
    "a categorical split past its categories": (_categorical_split_past_its_categories, "categories", True),
    "an output group past the model's": (lambda m: _trees(m)["tree_info"].__setitem__(0, 7), "tree_info", False),
    "iteration bounds falling back": (lambda m: _trees(m).update(iteration_indptr=[0, 5, 3, *range(3, 21)]),
                                      "iteration_indptr", False),
}


# Load and predict as the container does (its own C API call), on rows with missing values.
_SERVING_PROBE = """
import sys, numpy as np, xgboost as xgb
from serving.xgb_capi import DensePredict
model = xgb.Booster()
try:
    model.load_model(bytearray(open(sys.argv[1], "rb").read()))
    rows = np.random.default_rng(0).normal(size=(64, model.num_features())).astype(np.float32)
    rows[:, ::3] = np.nan
    DensePredict(model)(rows)
except Exception:
    sys.exit(3)
"""


@pytest.mark.parametrize("corruption", sorted(FIELD_CORRUPTIONS))
def test_fields_that_crash_xgboost_are_refused_by_name(model_dir: Path, tmp_path: Path, corruption: str) -> None:
    # Given the bundle's booster with one field rewritten to a value XGBoost's reader trusts
    model = booster_file.decode((model_dir / BOOSTER_FILE).read_bytes())
    assert _ubjson(model) and booster_file.check(_ubjson(model)) is None, "the re-encoding itself is sound"
    mutate, field, crashes = FIELD_CORRUPTIONS[corruption]
    mutate(model)
    data = _ubjson(model)
    # Then the check refuses it naming the field
    with pytest.raises(MalformedBooster, match=field):
        booster_file.check(data)
    # And (where it does so reliably) XGBoost itself dies on it, by a signal no except can catch
    if crashes:
        path = tmp_path / "bad.ubj"
        path.write_bytes(data)
        died = subprocess.run([sys.executable, "-c", _SERVING_PROBE, str(path)], capture_output=True, timeout=120,
                              check=False, cwd=Path(__file__).resolve().parents[2])
        assert died.returncode < 0, f"XGBoost survived {corruption} (exit {died.returncode})"
