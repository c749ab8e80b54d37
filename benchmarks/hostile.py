"""Owns the catalogue of hostile model tarballs, and what the container does with each.

Every tarball starts from a real, valid bundle and changes one thing an attacker (or an accident) would:
a path climbing out, an absolute path, links, devices, a checksum that does not match, a listed file
missing, a booster whose bytes crash XGBoost (with checksums that agree), a file ``metadata.json`` does not
list, a size it does not declare, and decompression bombs. ``load`` hands each to the container's own
loading (``serving.wsgi.create`` with ``TMPDIR`` pointed at a fresh folder) and reports whether it was
refused, in one line, with ``/ping`` not 200, nothing written outside ``TMPDIR`` and nothing left in it.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving import bundle, layout, wsgi

BOMB_BYTES = bundle.MAX_UNPACKED_BYTES + 64 * 1024**2
_ZEROS = b"\0" * (1024 * 1024)


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks: a bomb's content without holding it in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left, len(_ZEROS))
        buffer[:count] = _ZEROS[:count]
        self.left -= count
        return count


def _entry(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size, link, 0o644
    return info


def _write(path: Path, entries: list[tuple[tarfile.TarInfo, Any]]) -> Path:
    # Level 1: a bomb of zeros still shrinks a thousandfold, and writing it takes a second, not ten.
    with gzip.open(path, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w") as tar:
        for info, content in entries:
            if isinstance(content, bytes):
                info.size = len(content)
                content = io.BytesIO(content)
            tar.addfile(info, content)
    return path


def _files(model_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(model_dir.iterdir()) if p.is_file()}


def _regular(files: dict[str, bytes]) -> list[tuple[tarfile.TarInfo, Any]]:
    return [(_entry(name), data) for name, data in files.items()]


def _relisted(model_dir: Path, files: dict[str, bytes], work: Path) -> dict[str, bytes]:
    """``files`` with a ``metadata.json`` that lists them as they are (checksums and sizes agree)."""
    folder = work / "relisted"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    info = json.loads((model_dir / layout.METADATA_FILE).read_text())
    bundle.write_metadata(folder, {k: v for k, v in info.items() if k not in ("files", "sizes")})
    return _files(folder)


def _corrupt_booster(data: bytes) -> bytes:
    """The booster with bytes changed the way that crashed XGBoost's reader (a length far past the end)."""
    rng, out = random.Random(12), bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def catalogue(model_dir: Path, outside: Path) -> dict[str, Callable[[Path], Path]]:
    """Name -> a function writing that hostile tarball to the given path. ``outside`` is where an escape would land."""
    files = _files(model_dir)
    good = _regular(files)
    target = str(outside / "escaped")

    def plus(*extra: tuple[tarfile.TarInfo, Any]) -> Callable[[Path], Path]:
        return lambda path: _write(path, good + list(extra))

    def changed(name: str, data: bytes | None, relist: bool = False) -> Callable[[Path], Path]:
        def write(path: Path) -> Path:
            content = {k: v for k, v in files.items() if k != name} | ({name: data} if data is not None else {})
            return _write(path, _regular(_relisted(model_dir, content, path.parent) if relist else content))
        return write

    def bomb(listed: bool) -> Callable[[Path], Path]:
        def write(path: Path) -> Path:
            info = json.loads(files[layout.METADATA_FILE])
            if listed:  # metadata.json owns up to the size: it is the cap that refuses it
                info["files"]["padding.bin"], info.setdefault("sizes", {})["padding.bin"] = "0" * 64, BOMB_BYTES
            entries = [(e, d) for e, d in good if e.name != layout.METADATA_FILE]
            entries.append((_entry(layout.METADATA_FILE), json.dumps(info).encode()))
            return _write(path, [*entries, (_entry("padding.bin", size=BOMB_BYTES), _Zeros(BOMB_BYTES))])
        return write

    return {
        "traversal": plus((_entry("../escaped"), b"owned")),
        "nested traversal": plus((_entry("sub/../../escaped"), b"owned")),
        "absolute path": plus((_entry(target), b"owned")),
        "symlink": plus((_entry("link", tarfile.SYMTYPE, link=target), None)),
        "symlink as the booster": lambda path: _write(path, [(e, d) for e, d in good if e.name != "booster.ubj"]
                                                      + [(_entry("booster.ubj", tarfile.SYMTYPE, link=target), None)]),
        "hardlink": plus((_entry("hard", tarfile.LNKTYPE, link="/etc/passwd"), None)),
        "character device": plus((_entry("dev", tarfile.CHRTYPE), None)),
        "fifo": plus((_entry("fifo", tarfile.FIFOTYPE), None)),
        "checksum mismatch": changed("booster.ubj", files["booster.ubj"][:-1] + b"\x00"),
        "missing file": changed("schema.json", None),
        "corrupt booster": changed("booster.ubj", _corrupt_booster(files["booster.ubj"]), relist=True),
        "unlisted file": plus((_entry("extra.bin"), b"not in metadata.json")),
        "size not declared": changed("booster.ubj", files["booster.ubj"] + b" "),
        "bomb, unlisted": bomb(listed=False),
        "bomb, declared": bomb(listed=True),
        "not a tarball": _garbage,
    }


def _garbage(path: Path) -> Path:
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 100)  # a gzip magic number, then nothing gzip can read
    return path


def load(make: Callable[[Path], Path], work: Path, outside: Path) -> dict[str, Any]:
    """Write one hostile tarball and load it as the container would; what happened."""
    model_dir, tmp = work / "opt_ml_model", work / "tmp"
    for folder in (model_dir, tmp):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    make(model_dir / layout.TARBALL_FILE)
    before, tempfile.tempdir = tempfile.tempdir, str(tmp)
    try:
        app = wsgi.create(str(model_dir), 1024 * 1024)
    finally:
        tempfile.tempdir = before
    ping = app.test_client().get("/ping")
    message = (ping.get_json(silent=True) or {}).get("error", "")
    return {"refused": ping.status_code == 503, "ping": ping.status_code, "message": message,
            "one_line": "\n" not in message, "escaped": sorted(p.name for p in outside.iterdir()),
            "left_in_tmpdir": sorted(p.name for p in tmp.iterdir()),
            "model_dir": sorted(p.name for p in model_dir.iterdir())}
