"""The model tarball format: metadata sha256 sums, reproducible and atomic packing, safe unpacking."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from serving import bundle, layout
from serving.layout import ModelError


@pytest.fixture
def work_dir(model_dir: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the session bundle."""
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def _members(tar_path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tar_path, "r:gz") as tar:
        return tar.getmembers()


def test_file_digests_cover_every_file_but_metadata(work_dir: Path) -> None:
    digests = bundle.file_digests(work_dir)

    assert set(digests) == {"booster.ubj", "schema.json"}
    assert digests["booster.ubj"] == hashlib.sha256((work_dir / "booster.ubj").read_bytes()).hexdigest()


def test_write_metadata_is_deterministic_and_records_digests(work_dir: Path) -> None:
    info = {"version": "3", "registered_name": "m", "metrics": {"rmse": 1.5, "mae": 1.0}}

    bundle.write_metadata(work_dir, info)
    first = (work_dir / layout.METADATA_FILE).read_bytes()
    bundle.write_metadata(work_dir, dict(reversed(list(info.items()))))

    assert (work_dir / layout.METADATA_FILE).read_bytes() == first, "same info must give the same bytes"
    written = json.loads(first)
    assert list(written) == sorted(written)
    assert written["files"] == bundle.file_digests(work_dir)
    assert written["metrics"] == {"rmse": 1.5, "mae": 1.0}


def test_verify_returns_metadata_of_an_intact_bundle(work_dir: Path) -> None:
    assert bundle.verify(work_dir)["registered_name"] == "student-score"


def test_verify_names_a_file_whose_sha256_differs(work_dir: Path) -> None:
    with (work_dir / "booster.ubj").open("ab") as handle:
        handle.write(b"\0")

    with pytest.raises(ModelError, match=r"booster\.ubj: sha256 does not match"):
        bundle.verify(work_dir)


def test_verify_names_a_listed_file_that_is_missing(work_dir: Path) -> None:
    (work_dir / "schema.json").unlink()

    with pytest.raises(ModelError, match=r"schema\.json: listed .* but not a regular file"):
        bundle.verify(work_dir)


def test_verify_requires_metadata(work_dir: Path) -> None:
    (work_dir / layout.METADATA_FILE).unlink()

    with pytest.raises(ModelError, match="metadata.json not found"):
        bundle.verify(work_dir)


def test_verify_refuses_metadata_that_does_not_list_the_booster(work_dir: Path) -> None:
    meta = json.loads((work_dir / layout.METADATA_FILE).read_text())
    del meta["files"]["booster.ubj"]
    (work_dir / layout.METADATA_FILE).write_text(json.dumps(meta))

    with pytest.raises(ModelError, match=r"does not list booster\.ubj"):
        bundle.verify(work_dir)


def test_verify_refuses_a_listed_name_outside_the_bundle(work_dir: Path) -> None:
    meta = json.loads((work_dir / layout.METADATA_FILE).read_text())
    meta["files"]["../outside"] = "0" * 64
    (work_dir / layout.METADATA_FILE).write_text(json.dumps(meta))

    with pytest.raises(ModelError, match=r"unsafe path '\.\./outside'"):
        bundle.verify(work_dir)


def test_pack_puts_entries_at_the_root_with_fixed_attributes(work_dir: Path, tmp_path: Path) -> None:
    out = bundle.pack(work_dir, tmp_path / "model.tar.gz")

    members = _members(out)
    assert [m.name for m in members] == ["booster.ubj", "metadata.json", "schema.json"]
    for member in members:
        assert (member.isreg(), member.mtime, member.uid, member.gid, member.uname, member.gname,
                member.mode) == (True, 0, 0, 0, "", "", 0o644), member.name
    header = out.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0", "gzip header must carry no timestamp"
    assert not header[3] & 0x08, "gzip header must carry no file name"


def test_pack_twice_gives_byte_identical_tarballs(work_dir: Path, tmp_path: Path) -> None:
    first = bundle.pack(work_dir, tmp_path / "a" / "model.tar.gz").read_bytes()
    for path in work_dir.iterdir():
        os.utime(path, (1_000_000, 1_000_000))  # a re-export writes the files again, at another time

    second = bundle.pack(work_dir, tmp_path / "b" / "model.tar.gz").read_bytes()

    assert first == second


def test_pack_refuses_a_bundle_that_does_not_verify(work_dir: Path, tmp_path: Path) -> None:
    (work_dir / "schema.json").write_text("{}")

    with pytest.raises(ModelError, match=r"schema\.json"):
        bundle.pack(work_dir, tmp_path / "model.tar.gz")
    assert not (tmp_path / "model.tar.gz").exists()


@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()])
def test_interrupted_pack_leaves_the_existing_tarball_and_no_temp_file(
        work_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException) -> None:
    out_dir = tmp_path / "dist"
    out = out_dir / "model.tar.gz"
    out_dir.mkdir()
    out.write_bytes(b"the previous export")
    real_addfile = tarfile.TarFile.addfile
    calls = []

    def failing_addfile(self: tarfile.TarFile, *args, **kwargs) -> None:
        calls.append(args[0].name)
        if len(calls) == 2:  # after the first file's bytes are already in the temp file
            raise failure
        real_addfile(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "addfile", failing_addfile)

    with pytest.raises(type(failure)):
        bundle.pack(work_dir, out)

    assert calls == ["booster.ubj", "metadata.json"], "the failure must happen mid-write"
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.tar.gz"], "no temp file may be left behind"


def test_unpack_round_trips_a_packed_bundle(model_tar: Path, model_dir: Path, tmp_path: Path) -> None:
    dest = bundle.unpack(model_tar, tmp_path / "out")

    assert sorted(p.name for p in dest.iterdir()) == ["booster.ubj", "metadata.json", "schema.json"]
    assert (dest / "booster.ubj").read_bytes() == (model_dir / "booster.ubj").read_bytes()
    bundle.verify(dest)


def _tarball(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_unpack_accepts_dot_slash_names_written_by_tar_c(model_dir: Path, tmp_path: Path) -> None:
    # `tar czf model.tar.gz -C model .` is how people pack by hand; SageMaker accepts it, so do we.
    entries = [(_entry(".", tarfile.DIRTYPE), None)] + [
        (_entry(f"./{p.name}"), p.read_bytes()) for p in sorted(model_dir.iterdir())]
    tar = _tarball(tmp_path / "model.tar.gz", entries)

    bundle.verify(bundle.unpack(tar, tmp_path / "out"))


@pytest.mark.parametrize(("bad", "message"), [
    ((_entry("../x"), b"owned"), "contains '..'"),
    ((_entry("sub/../../x"), b"owned"), "contains '..'"),
    ((_entry("/etc/x"), b"owned"), "absolute"),
    ((_entry("link", tarfile.SYMTYPE, "/etc/passwd"), None), "symlink"),
    ((_entry("hard", tarfile.LNKTYPE, "/etc/passwd"), None), "hardlink"),
    ((_entry("dev", tarfile.CHRTYPE), None), "device or fifo"),
    ((_entry("blk", tarfile.BLKTYPE), None), "device or fifo"),
    ((_entry("fifo", tarfile.FIFOTYPE), None), "device or fifo"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "chardev", "blockdev", "fifo"])
def test_unpack_refuses_unsafe_entries_and_writes_nothing(
        tmp_path: Path, bad: tuple[tarfile.TarInfo, bytes | None], message: str) -> None:
    tar = _tarball(tmp_path / "evil.tar.gz", [(_entry("booster.ubj"), b"fine"), bad])
    dest = tmp_path / "deep" / "out"

    with pytest.raises(ModelError, match=message) as caught:
        bundle.unpack(tar, dest)

    assert "\n" not in str(caught.value)
    assert list(dest.iterdir()) == [], "nothing may be extracted from a refused archive"
    assert not (tmp_path / "deep" / "x").exists()
    assert not (tmp_path / "x").exists()


def test_unpack_refuses_duplicate_entries(tmp_path: Path) -> None:
    tar = _tarball(tmp_path / "dup.tar.gz", [(_entry("schema.json"), b"a"), (_entry("schema.json"), b"b")])

    with pytest.raises(ModelError, match="duplicate"):
        bundle.unpack(tar, tmp_path / "out")


def test_unpack_refuses_a_bundle_of_too_many_folders_before_making_one(model_dir: Path, tmp_path: Path) -> None:
    # Given a valid bundle padded with 20,000 empty folders (they count no bytes: before, all were made, slowly)
    folders = [(_entry(f"d{i}", tarfile.DIRTYPE), None) for i in range(20_000)]
    files = [(_entry(p.name), p.read_bytes()) for p in sorted(model_dir.iterdir())]
    tar = _tarball(tmp_path / "folders.tar.gz", files + folders)
    dest = tmp_path / "out"
    # When it is unpacked, then it is refused in one line and nothing is made
    with pytest.raises(ModelError, match="more than 256 entries") as caught:
        bundle.unpack(tar, dest)
    assert "\n" not in str(caught.value)
    assert list(dest.iterdir()) == []


def test_unpack_refuses_archives_over_the_size_limit(tmp_path: Path) -> None:
    tar = _tarball(tmp_path / "big.tar.gz", [(_entry("booster.ubj"), b"x" * 1000)])

    with pytest.raises(ModelError, match="more than 999 bytes"):
        bundle.unpack(tar, tmp_path / "out", max_bytes=999)


@pytest.mark.parametrize("content", [b"not a tarball at all", gzip.compress(b"gzip but not tar" * 100)[:50]],
                         ids=["garbage", "truncated-gzip"])
def test_unpack_reports_an_unreadable_file_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(content)

    with pytest.raises(ModelError, match="not a readable model tarball") as caught:
        bundle.unpack(path, tmp_path / "out")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_read_member_names_a_path_that_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    # Given a tarball path that is a folder or a FIFO (which would wait for a writer forever if opened)
    path = tmp_path / "model.tar.gz"
    path.mkdir() if kind == "folder" else os.mkfifo(path)

    # Then reading its metadata says so at once, instead of calling it missing
    with pytest.raises(ModelError, match=r"model\.tar\.gz: not a regular file \(expected a model tarball\)$"):
        layout.bundle_metadata(path)


def test_read_member_names_a_missing_tarball(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model tarball"):
        layout.read_member(tmp_path / "missing.tar.gz", layout.METADATA_FILE)
