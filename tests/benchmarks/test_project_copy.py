"""The throwaway copy of the project the pipeline tests and the scale benchmark run in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from benchmarks import project_copy


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_a_copy_is_one_clean_commit_without_what_was_left_out(tmp_path: Path) -> None:
    copy = project_copy.make(tmp_path / "copy", leave_out=("benchmarks/",), train={"n_trials": 3})

    files = set(_git(copy, "ls-files").splitlines())
    assert {"dvc.yaml", "data.dvc", "params.yaml", "experiments/train.py"} <= files
    assert not any(f.startswith(("tests/", "benchmarks/", "infra/node_modules")) for f in files)
    assert _git(copy, "status", "--porcelain") == ""
    assert len(_git(copy, "log", "--oneline").splitlines()) == 1
    params = yaml.safe_load((copy / "params.yaml").read_text())
    assert params["train"]["n_trials"] == 3
    original = yaml.safe_load((project_copy.ROOT / "params.yaml").read_text())
    assert {k: v for k, v in params["train"].items() if k != "n_trials"} == \
        {k: v for k, v in original["train"].items() if k != "n_trials"}
    links = [f for f in files if (project_copy.ROOT / f).is_symlink()]
    assert links and all((copy / f).is_symlink() for f in links)  # the Lambda's link to the wire contract


def test_a_table_given_is_dvc_added_and_named_by_the_commit(tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    table.write_text("Hours_Studied,Exam_Score\n1,60\n2,62\n")
    copy = project_copy.make(tmp_path / "copy", leave_out=("benchmarks/", "infra/"), csv=table)

    assert (copy / "data" / "student_performance.csv").read_bytes() == table.read_bytes()
    tracked = yaml.safe_load((copy / "data.dvc").read_text())["outs"][0]
    original = yaml.safe_load((project_copy.ROOT / "data.dvc").read_text())["outs"][0]
    assert tracked["md5"] != original["md5"]
    assert _git(copy, "status", "--porcelain") == ""
