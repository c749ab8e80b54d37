"""Owns the benchmark's model tarballs: ours exported from the registry, the reference's pickles packed as it did."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from core.cli import UserError
from core.params import PARAMS_FILE, load_params
from serving.layout import TARBALL_FILE

ROOT = Path(__file__).resolve().parent.parent


def export_ours(train_dir: Path, version: str, out_dir: Path) -> Path:
    """``model.tar.gz`` of the registered version, alone in ``out_dir`` (what ``docker run -v`` mounts).

    Raises:
        UserError: ``registry.export`` failed (its last line is included): nothing else is measured instead.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tarball = out_dir / TARBALL_FILE
    done = subprocess.run([sys.executable, "-m", "registry.export", "--params", str(train_dir / PARAMS_FILE),
                           "--version", version, "--out", str(tarball)], cwd=train_dir, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    if done.returncode != 0 or not tarball.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"benchmark: exporting version {version} failed: {last}")
    return tarball


def model_uri(train_dir: Path, version: str) -> str:
    """``models:/NAME/VERSION`` of the version the training in ``train_dir`` registered."""
    return f"models:/{load_params(train_dir / PARAMS_FILE).model.name}/{version}"


def pack_reference(train_dir: Path, out_dir: Path) -> Path:
    """The reference's two pickles in ``model.tar.gz``, as its pipeline uploaded them."""
    from benchmarks.reference.train import ENCODERS_FILE, MODEL_FILE

    out_dir.mkdir(parents=True, exist_ok=True)
    tarball = out_dir / TARBALL_FILE
    with tarfile.open(tarball, "w:gz") as tar:
        for name in (MODEL_FILE, ENCODERS_FILE):
            tar.add(train_dir / name, arcname=name)
    return tarball


def fresh_dir(tarball: Path, parent: Path) -> Path:
    """A new model dir holding only a copy of ``tarball`` (the reference unpacks into its model dir)."""
    folder = Path(tempfile.mkdtemp(prefix="model-", dir=parent))
    shutil.copy2(tarball, folder / TARBALL_FILE)
    return folder
