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
