"""Hostile model tarballs through the container's own loading: each refused in one line, /ping never 200.

The catalogue is benchmarks/hostile.py's: traversal, absolute paths, links, devices, a checksum mismatch,
a missing file, a booster that crashes XGBoost, an unlisted file, an undeclared size and two bombs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import hostile
from serving import unpacking

EXPECTED = {
    "traversal": "contains '..'", "nested traversal": "contains '..'", "absolute path": "absolute",
    "symlink": "symlink", "symlink as the booster": "symlink", "hardlink": "hardlink",
    "character device": "device", "fifo": "device or fifo", "checksum mismatch": "sha256 does not match",
    "missing file": "listed in metadata.json but missing", "corrupt booster": "not a valid XGBoost model",
    "unlisted file": "unlisted file 'extra.bin'", "size not declared": "declares",
    "bomb, unlisted": "unpacks to more than", "bomb, declared": "unpacks to more than",
    "not a tarball": "not a readable model tarball",
}


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outside")


@pytest.fixture(scope="module")
def catalogue(model_dir: Path, outside: Path) -> dict:
    return hostile.catalogue(model_dir, outside)


def test_the_catalogue_is_what_this_file_checks(catalogue: dict) -> None:
    assert set(catalogue) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_hostile_tarball_is_refused_in_one_line(catalogue: dict, name: str, tmp_path: Path, outside: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_extract = unpacking._extract

    def spy(tar: object, member: object, target: Path, expected: object) -> None:
        opened.append(target.name)
        real_extract(tar, member, target, expected)

    monkeypatch.setattr(unpacking, "_extract", spy)

    result = hostile.load(catalogue[name], tmp_path, outside)

    assert result["refused"] and result["ping"] == 503, result
    assert EXPECTED[name] in result["message"] and result["one_line"], result["message"]
    assert result["escaped"] == [], "nothing may be written outside the temp directory"
    assert result["left_in_tmpdir"] == [], "the refused bundle's files are gone"
    if name.startswith("bomb") or name in ("unlisted file", "size not declared", "traversal", "symlink"):
        assert opened == [], f"written before it was refused: {opened}"
