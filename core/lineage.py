"""Owns the data version recorded as lineage: the md5 DVC keeps for the tracked data folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from core.cli import UserError
from core.files import is_special


def data_not_found(path: Path) -> UserError:
    """The error for a ``data.path`` that is not there (a fresh clone before ``dvc pull``, or a wrong path)."""
    return UserError(f"{path}: data file not found (run `dvc pull`, or set data.path in params.yaml)")


def dvc_data_hash(data_path: Path | None = None, dvc_file: Path = Path("data.dvc")) -> str:
    """The data version to record as lineage: the md5 DVC recorded for the tracked folder.

    With ``data_path``, the file's bytes are checked against DVC's record of it (when DVC's manifest of the
    folder is in the local cache), so a CSV replaced without ``dvc add`` is not trained under an old hash; a
    file outside the tracked folder is identified by its own content, ``md5:<hex>``.

    Raises:
        UserError: ``data_path`` cannot be read, or differs from what ``data.dvc`` records.
    """
    dvc_file = Path(dvc_file)
    if is_special(dvc_file):  # a folder, or a FIFO that would hang the read
        raise UserError(f"{dvc_file}: cannot read DVC's record of the data (not a regular file)")
    try:
        out = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["outs"][0]
        recorded, tracked = str(out["md5"]), dvc_file.parent / out["path"]
    except (FileNotFoundError, KeyError, IndexError, TypeError, yaml.YAMLError):
        recorded, tracked = None, None
    except (OSError, UnicodeDecodeError) as err:  # no permission, not UTF-8
        reason = getattr(err, "strerror", None) or err.__class__.__name__
        raise UserError(f"{dvc_file}: cannot read DVC's record of the data ({reason})") from None
    if data_path is None:
        return recorded or "untracked"
    data_path = Path(data_path)
    if is_special(data_path):
        raise UserError(f"{data_path}: cannot read the data file (not a regular file)")
    try:
        with data_path.open("rb") as handle:  # streamed: a big table is never held whole just to hash it
            actual = hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
    except FileNotFoundError:
        raise data_not_found(data_path) from None
    except OSError as err:  # a folder, no permission
        raise UserError(f"{data_path}: cannot read the data file ({err.strerror or err})") from None
    inside = tracked is not None and data_path.resolve().is_relative_to(tracked.resolve())
    if not inside:
        return f"md5:{actual}"
    expected = _manifest_md5(Path(dvc_file).parent, recorded, data_path.resolve().relative_to(tracked.resolve()))
    if expected is not None and expected != actual:
        raise UserError(f"{data_path} is not the version data.dvc records: run `dvc add {out['path']}` to "
                        f"version it (or `dvc checkout` to restore the recorded one)")
    return recorded


def _manifest_md5(root: Path, dir_md5: str, relpath: Path) -> str | None:
    """The md5 DVC's cached folder manifest records for ``relpath``, or None when the manifest is not cached."""
    digest = dir_md5.removesuffix(".dir")
    manifest = root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir"
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return next((e["md5"] for e in entries if e.get("relpath") == relpath.as_posix()), None)
