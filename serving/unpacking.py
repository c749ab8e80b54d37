"""Owns unpacking a model tarball that nobody vouches for: every entry checked before anything is written.

The container unpacks ``model.tar.gz`` into TMPDIR (RAM when it is a tmpfs) when SageMaker hands it the
tarball itself, and the local stand-in does the same; ``serving.bundle`` re-exports ``unpack``. Standard
library only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from serving.layout import METADATA_FILE, ModelError

# What a worker may write to TMPDIR (RAM under --tmpfs) when unpacking: about 100 times the largest booster
# this project's search space can train (~2 MB: 240 trees of depth 8), far below what a gzip bomb would fill.
MAX_UNPACKED_BYTES = 256 * 1024**2
MAX_METADATA_BYTES = 1024**2
# Entries (files and folders) a bundle may hold: ours holds three files. Folders count no bytes, so without a
# count a 947 KB tarball of 200,000 empty folders passed every check and took each worker 26 s to unpack.
MAX_ENTRIES = 256
_CHUNK = 1024 * 1024


def check_member_name(name: str) -> PurePosixPath:
    """The member's relative path, or ``ModelError`` if it is absolute or climbs out with ``..``."""
    if not name or name.startswith(("/", "\\")) or "\x00" in name:
        raise ModelError(f"unsafe path {name!r} in model bundle: absolute or empty")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise ModelError(f"unsafe path {name!r} in model bundle: contains '..'")
    return path


def _inspect(tar: tarfile.TarFile, max_bytes: int) -> tuple[list[tuple[tarfile.TarInfo, PurePosixPath]], Any]:
    """Every member checked, and ``metadata.json`` read into memory, before anything is written.

    Members are read one header at a time, so an entry declaring too many bytes is refused before its data
    is even decompressed.
    """
    members, seen, total, metadata = [], set(), 0, None
    for member in tar:
        path = check_member_name(member.name)
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
        if len(seen) > MAX_ENTRIES:
            raise ModelError(f"model bundle holds more than {MAX_ENTRIES} entries (files and folders)")
        total += member.size if member.isreg() else 0
        if total > max_bytes:
            raise ModelError(f"model bundle unpacks to more than {max_bytes} bytes")
        if path.as_posix() == METADATA_FILE and member.isreg():
            handle = tar.extractfile(member)
            metadata = _parse_metadata(handle.read(MAX_METADATA_BYTES + 1) if handle else b"")
        members.append((member, path))
    return members, metadata


def _parse_metadata(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_METADATA_BYTES:
        raise ModelError(f"{METADATA_FILE} in model bundle is larger than {MAX_METADATA_BYTES} bytes")
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{METADATA_FILE} in model bundle is not valid JSON ({err})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("files"), dict):
        raise ModelError(f"{METADATA_FILE} in model bundle: expected an object with a 'files' mapping")
    return metadata


def _check_listed(members: list[tuple[tarfile.TarInfo, PurePosixPath]], metadata: Any) -> None:
    """Every regular file is listed in ``metadata.json`` with the size it declares, and every listed file is there."""
    if metadata is None:
        raise ModelError(f"no {METADATA_FILE} in model bundle: it lists what the bundle may hold")
    files, sizes = metadata["files"], metadata.get("sizes") or {}
    held = {path.as_posix(): member for member, path in members if member.isreg()}
    for name, member in sorted(held.items()):
        if name != METADATA_FILE and name not in files:
            raise ModelError(f"unlisted file {name!r} in model bundle: {METADATA_FILE} does not list it")
        if name in sizes and sizes[name] != member.size:
            raise ModelError(f"{name}: sha256 does not match {METADATA_FILE}, which declares {sizes[name]} bytes "
                             f"where the bundle holds {member.size} (corrupt or tampered file)")
    missing = sorted(set(files) - set(held))
    if missing:
        raise ModelError(f"{missing[0]!r} is listed in {METADATA_FILE} but missing from the model bundle")


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, expected: str | None) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise ModelError(f"cannot read {member.name!r} from the model bundle")
    digest = hashlib.sha256()
    # O_EXCL|O_NOFOLLOW: never write through a link or over a file planted in dest_dir.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out, source:
        for block in iter(lambda: source.read(_CHUNK), b""):
            digest.update(block)
            out.write(block)
    if expected is not None and digest.hexdigest() != expected:
        raise ModelError(f"{member.name}: sha256 does not match {METADATA_FILE} (corrupt or tampered file)")


def unpack(tar_path: str | Path, dest_dir: str | Path, *, max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Extract a model tarball into ``dest_dir`` (created if needed), refusing anything unsafe.

    Refused before anything is written: absolute names, ``..`` components, symlinks, hardlinks, devices,
    fifos, duplicates, more than ``MAX_ENTRIES`` entries or ``max_bytes`` once unpacked, no ``metadata.json``, a file it does not list
    or with another size than it declares, a listed file missing. A file whose sha256 differs from the
    listed one is refused as it is written, and what was written is removed again.

    Raises:
        ModelError: one line naming the problem.
    """
    tar_path, dest_dir = Path(tar_path), Path(dest_dir)
    if not tar_path.is_file():
        raise ModelError(f"{tar_path}: model tarball not found")
    dest_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            members, metadata = _inspect(tar, max_bytes)
            _check_listed(members, metadata)
            for member, path in sorted(members, key=lambda item: item[1].parts):
                target = dest_dir.joinpath(*path.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                written.append(target)
                _extract(tar, member, target, metadata["files"].get(path.as_posix()))
    except BaseException as err:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(err, (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, io.UnsupportedOperation)):
            # tarfile's "r:*" lists every compression it tried on separate lines; the first says enough.
            reason = (str(err).splitlines() or [type(err).__name__])[0].rstrip(":")
            raise ModelError(f"{tar_path}: not a readable model tarball ({reason})") from None
        if isinstance(err, OSError):
            raise ModelError(f"{tar_path}: cannot unpack into {dest_dir} ({err.strerror or err})") from None
        raise
    return dest_dir
