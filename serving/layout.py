"""Owns the layout of a model bundle: its file names, its error, and reading one JSON file from a tarball.

Standard library only, so anything that needs to know what a bundle is called or says about itself (the
smoke test, the stand-in, the release summary) can read ``metadata.json`` without importing XGBoost.
Writing and verifying bundles is ``serving.bundle``; loading the model in them is ``serving.predictor``.

A model directory (and the root of ``model.tar.gz``, which SageMaker unpacks into ``/opt/ml/model``) holds:
- ``booster.ubj``: the booster in XGBoost's own format;
- ``schema.json``: features, kinds, category levels, scaling and a self-test record with its prediction;
- ``profile.json`` (versions trained since it existed): the reference profile the monitoring jobs compare
  live traffic with (``serving.profile``); the container does not read it;
- ``metadata.json``: registered name, version, run id, data hash, git commit, test metrics, export time
  and the sha256 of every other file.
"""

from __future__ import annotations

import json
import tarfile
import zlib
from pathlib import Path
from typing import Any

BOOSTER_FILE = "booster.ubj"
SCHEMA_FILE = "schema.json"
METADATA_FILE = "metadata.json"
TARBALL_FILE = "model.tar.gz"
# Every bundle must list these; otherwise a metadata.json naming no files would "verify" anything.
REQUIRED_FILES = (BOOSTER_FILE, SCHEMA_FILE)
# The two feature kinds ``schema.json`` (and ``profile.json``) name.
NUMERIC = "numeric"
CATEGORICAL = "categorical"


class ModelError(RuntimeError):
    """A model directory or bundle is missing, corrupt or fails its self-test."""


def read_member(tarball: str | Path, name: str) -> Any:
    """Parse the JSON file ``name`` at the root of a bundle tarball, without unpacking anything else.

    Raises:
        ModelError: the file is missing, is not a tar.gz, or has no such JSON member.
    """
    tarball = Path(tarball)
    if tarball.exists() and not tarball.is_file():  # a folder, or a FIFO that would wait for a writer forever
        raise ModelError(f"{tarball}: not a regular file (expected a model tarball)")
    if not tarball.is_file():
        raise ModelError(f"{tarball}: no such model tarball (run make export first)")
    try:
        with tarfile.open(tarball, mode="r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.removeprefix("./") == name), None)
            handle = tar.extractfile(member) if member is not None and member.isfile() else None
            if handle is None:
                raise ModelError(f"{tarball}: no {name} at the archive root")
            return json.loads(handle.read().decode("utf-8"))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:  # zlib.error: a byte changed in the stream
        raise ModelError(f"{tarball}: not a readable tar.gz ({err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{tarball}: {name} is not valid JSON ({err})") from None


def bundle_metadata(tarball: str | Path) -> dict[str, Any]:
    """The ``metadata.json`` of a bundle tarball, which must name a model version.

    Raises:
        ModelError: unreadable, or no ``metadata.json`` object with a non-empty ``version``.
    """
    metadata = read_member(tarball, METADATA_FILE)
    if not isinstance(metadata, dict) or not str(metadata.get("version") or "").strip():
        raise ModelError(f"{tarball}: {METADATA_FILE} names no model version")
    return metadata
