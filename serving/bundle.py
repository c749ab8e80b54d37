"""Owns writing and checking bundles: ``metadata.json`` with sha256 sums, reproducible packing, safe unpacking.

A bundle is a flat-or-nested model directory packed at the root of ``model.tar.gz``; its file names are
``serving.layout``'s.

- ``write_metadata`` records the sha256 of every file next to the caller's lineage fields;
  ``verify`` checks them, so a tampered or truncated file is refused before it is ever loaded.
- ``pack`` is reproducible (sorted entries, fixed mtimes/owners/modes, gzip header without time or
  name) and atomic (temp file in the target directory, fsync, rename); a temp file left by a pack that
  was killed (SIGKILL gives no chance to clean up) is removed by the next pack into the same place.
- ``unpack`` accepts only regular files and directories with relative, ``..``-free names, each listed in
  ``metadata.json`` with its declared size, and writes nothing before all of that is checked.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import json
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serving.layout import METADATA_FILE, REQUIRED_FILES, ModelError
from serving.unpacking import MAX_UNPACKED_BYTES, check_member_name, unpack

__all__ = ["MAX_UNPACKED_BYTES", "TEMP_SUFFIX", "file_digests", "is_bundle", "pack", "read_metadata", "sha256",
           "temp_prefix", "unpack", "verify", "write_metadata"]

_CHUNK = 1024 * 1024
TEMP_SUFFIX = ".tmp"
_GZIP_MAGIC = b"\x1f\x8b"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(model_dir: Path) -> tuple[list[str], list[str]]:
    """Relative POSIX names of the directories and regular files under ``model_dir``, sorted.

    Raises:
        ModelError: a symlink or special file, which a bundle cannot carry.
    """
    dirs, files = [], []
    for path in sorted(model_dir.rglob("*")):
        name = path.relative_to(model_dir).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            dirs.append(name)
        elif stat.S_ISREG(mode):
            files.append(name)
        else:
            raise ModelError(f"{path}: only regular files and directories can be bundled")
    return dirs, files


def file_digests(model_dir: str | Path) -> dict[str, str]:
    """The sha256 of every regular file under ``model_dir`` except ``metadata.json``, by relative name.

    Raises:
        ModelError: ``model_dir`` is not a directory, or holds a symlink or special file.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found")
    _, files = _walk(model_dir)
    return {name: sha256(model_dir / name) for name in files if name != METADATA_FILE}


def write_metadata(model_dir: str | Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``metadata.json``: ``info`` plus ``"files"`` and ``"sizes"``, the sha256 and size of every other file.

    Args:
        model_dir: a directory already holding the model files.
        info: lineage fields (registered_name, version, run_id, data_hash, git_commit, metrics,
            exported_at); must be JSON-serialisable. ``"files"`` and ``"sizes"`` keys in it are replaced.

    Returns:
        The metadata as written.
    """
    model_dir = Path(model_dir)
    digests = file_digests(model_dir)
    # The sizes bound what unpacking may write, before it writes anything (see ``unpack``).
    metadata = {**info, "files": digests, "sizes": {name: (model_dir / name).stat().st_size for name in digests}}
    # Sorted keys and fixed formatting: the same inputs give the same bytes, so re-exports are identical.
    text = json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"
    (model_dir / METADATA_FILE).write_text(text, encoding="utf-8")
    return metadata


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """Parse ``metadata.json`` without checking the files it lists.

    Raises:
        ModelError: the file is missing or is not a JSON object with a ``files`` mapping.
    """
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise ModelError(f"{path} not found: every exported model carries one (see serving/bundle.py)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("files"), dict):
        raise ModelError(f"{path}: expected an object with a 'files' mapping of name to sha256")
    return metadata


def verify(model_dir: str | Path) -> dict[str, Any]:
    """Check every file listed in ``metadata.json`` against its sha256.

    Returns:
        The metadata.

    Raises:
        ModelError: metadata is missing or malformed, a required file is not listed, or a listed file is
            missing or differs; the message names the file.
    """
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    files = metadata["files"]
    for required in REQUIRED_FILES:
        if required not in files:
            raise ModelError(f"{METADATA_FILE} does not list {required}")
    for name, expected in sorted(files.items()):
        check_member_name(name)
        path = model_dir / name
        if path.is_symlink() or not path.is_file():
            raise ModelError(f"{name}: listed in {METADATA_FILE} but not a regular file in {model_dir}")
        if sha256(path) != expected:
            raise ModelError(f"{name}: sha256 does not match {METADATA_FILE} (corrupt or tampered file)")
    return metadata


def _tar_info(name: str, *, size: int = 0, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = size
    info.mode = 0o755 if is_dir else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(model_dir: str | Path, out_path: str | Path) -> Path:
    """Verify ``model_dir`` and write it as a reproducible ``.tar.gz``, entries at the archive root.

    The tarball replaces ``out_path`` only once it is completely written and synced; on any failure the
    temporary file is removed and an existing ``out_path`` is left as it was.

    Raises:
        ModelError: ``model_dir`` has no valid ``metadata.json`` or a file does not match it.
    """
    model_dir, out_path = Path(model_dir), Path(out_path)
    verify(model_dir)
    dirs, files = _walk(model_dir)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(out_path)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(out_path), suffix=TEMP_SUFFIX, dir=out_path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            # filename="" and mtime=0 keep the gzip header free of the temp name and the clock.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                dir_names = set(dirs)
                for name in sorted(dirs + files):
                    if name in dir_names:
                        tar.addfile(_tar_info(name, is_dir=True))
                        continue
                    path = model_dir / name
                    with path.open("rb") as handle:
                        size = os.fstat(handle.fileno()).st_size
                        tar.addfile(_tar_info(name, size=size), handle)
            raw.flush()
            os.fsync(raw.fileno())
        # mkstemp creates 0600; a model tarball is meant to be read by uploaders and other users.
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out_path.parent)
    return out_path


def temp_prefix(out_path: Path) -> str:
    """The start of the temp file's name ``pack`` writes beside ``out_path`` (mkstemp adds 8 characters and
    ``TEMP_SUFFIX``): a destination check probes with a name as long, since it is longer than ``out_path``'s."""
    # The pid in the name tells a later pack whether this temp file's writer is still alive.
    return f".{out_path.name}.{os.getpid()}."


def is_bundle(path: Path) -> bool:
    """Whether the regular file ``path`` is a model tarball: gzip magic, then ``metadata.json`` among the tar's
    root entries (``pack`` writes it second). Reads only up to that entry.

    Raises:
        OSError: ``path`` cannot be read (a damaged or foreign file is False, not an error).
    """
    with path.open("rb") as handle:
        if handle.read(2) != _GZIP_MAGIC:
            return False
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            return any(member.name.removeprefix("./") == METADATA_FILE for member in tar)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile):
        return False


def _remove_abandoned(out_path: Path) -> None:
    """Delete the temp files of packs into ``out_path`` that were killed before they could clean up."""
    prefix = f".{out_path.name}."
    for leftover in out_path.parent.glob(f"{glob.escape(prefix)}*{TEMP_SUFFIX}"):
        pid = leftover.name.removeprefix(prefix).split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; a pid past a C int (hand-edited)
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every filesystem allows opening a directory, hence suppress.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
