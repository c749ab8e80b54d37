"""Owns writing and checking bundles: ``metadata.json`` with sha256 sums, reproducible packing, safe unpacking.

A bundle is a flat-or-nested model directory packed at the root of ``model.tar.gz``; its file names are
``serving.layout``'s.

- ``write_metadata`` records the sha256 of every file next to the caller's lineage fields;
  ``verify`` checks them, so a tampered or truncated file is refused before it is ever loaded.
- ``pack`` is reproducible (sorted entries, fixed mtimes/owners/modes, gzip header without time or
  name) and atomic (temp file in the target directory, fsync, rename).
- ``unpack`` accepts only regular files and directories with relative, ``..``-free names.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from serving.layout import METADATA_FILE, REQUIRED_FILES, ModelError

# Far above any model this project trains, low enough that a gzip bomb cannot fill /tmp.
MAX_UNPACKED_BYTES = 2 * 1024**3
_CHUNK = 1024 * 1024


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
    """Write ``metadata.json``: ``info`` plus ``"files"``, the sha256 of every other file.

    Args:
        model_dir: a directory already holding the model files.
        info: lineage fields (registered_name, version, run_id, data_hash, git_commit, metrics,
            exported_at); must be JSON-serialisable. A ``"files"`` key in it is replaced.

    Returns:
        The metadata as written.
    """
    model_dir = Path(model_dir)
    metadata = {**info, "files": file_digests(model_dir)}
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
        _check_member_name(name)
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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
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


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every filesystem allows opening a directory, hence suppress.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_member_name(name: str) -> PurePosixPath:
    """The member's relative path, or ``ModelError`` if it is absolute or climbs out with ``..``."""
    if not name or name.startswith(("/", "\\")) or "\x00" in name:
        raise ModelError(f"unsafe path {name!r} in model bundle: absolute or empty")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise ModelError(f"unsafe path {name!r} in model bundle: contains '..'")
    return path


def _safe_members(tar: tarfile.TarFile, max_bytes: int) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    """Every member checked before anything is written, so a bad archive leaves nothing behind."""
    members, seen, total = [], set(), 0
    for member in tar.getmembers():
        path = _check_member_name(member.name)
        if path.parts == () or path == PurePosixPath("."):
            continue  # the "./" entry that `tar -C dir .` writes
        if not (member.isreg() or member.isdir()):
            kind = ("symlink" if member.issym() else "hardlink" if member.islnk()
                    else "device or fifo" if (member.ischr() or member.isblk() or member.isfifo())
                    else "special entry")
            raise ModelError(f"unsafe entry {member.name!r} in model bundle: {kind}")
        if path in seen:
            raise ModelError(f"duplicate entry {member.name!r} in model bundle")
        seen.add(path)
        total += member.size if member.isreg() else 0
        if total > max_bytes:
            raise ModelError(f"model bundle unpacks to more than {max_bytes} bytes")
        members.append((member, path))
    return members


def unpack(tar_path: str | Path, dest_dir: str | Path, *, max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Extract a model tarball into ``dest_dir`` (created if needed), refusing anything unsafe.

    Refused: absolute names, ``..`` components, symlinks, hardlinks, devices, fifos, duplicates, and
    archives larger than ``max_bytes`` once unpacked. Nothing is written unless every entry passes.

    Raises:
        ModelError: one line naming the problem.
    """
    tar_path, dest_dir = Path(tar_path), Path(dest_dir)
    if not tar_path.is_file():
        raise ModelError(f"{tar_path}: model tarball not found")
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            members = _safe_members(tar, max_bytes)
            for member, path in sorted(members, key=lambda item: item[1].parts):
                target = dest_dir.joinpath(*path.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise ModelError(f"cannot read {member.name!r} from {tar_path}")
                # O_EXCL|O_NOFOLLOW: never write through a link or over a file planted in dest_dir.
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out, source:
                    for block in iter(lambda src=source: src.read(_CHUNK), b""):
                        out.write(block)
    except ModelError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, io.UnsupportedOperation) as err:
        # tarfile's "r:*" lists every compression it tried on separate lines; the first says enough.
        reason = (str(err).splitlines() or [type(err).__name__])[0].rstrip(":")
        raise ModelError(f"{tar_path}: not a readable model tarball ({reason})") from None
    except OSError as err:
        raise ModelError(f"{tar_path}: cannot unpack into {dest_dir} ({err.strerror or err})") from None
    return dest_dir
