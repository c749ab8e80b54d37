"""Owns a throwaway copy of the project: its files in a new git repository, one commit, as a fresh clone has them.

The tests and benchmarks that run a real ``dvc repro`` (or ``make``) on the project need the project outside
this work tree, with their own stores, a training budget of their own and sometimes another table; this is
the one way they get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Never copied: the tests, and the CDK's installed packages (large, and no stage reads them).
ALWAYS_LEFT_OUT = ("tests/", "infra/node_modules")
GIT_IDENTITY = ["-c", "user.name=project-copy", "-c", "user.email=project-copy@localhost"]


def project_files() -> list[str]:
    """The project's files as git sees them: tracked, and new ones not ignored (paths relative to the root)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    return listed.splitlines()


def make(dest: Path, *, leave_out: Sequence[str] = (), train: Mapping[str, Any] | None = None,
         csv: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Copy the project to ``dest`` and commit it there; returns ``dest``.

    Args:
        dest: an empty or missing folder.
        leave_out: path prefixes not copied, besides ``ALWAYS_LEFT_OUT`` (e.g. ``"infra/"``).
        train: settings replacing those of ``params.yaml``'s ``train`` section (a smaller search, say).
        csv: a table to train on instead of the DVC-tracked sample; it is ``dvc add``-ed, so ``data.dvc``
            names it in the commit. Without it the copy has no data: ``dvc pull`` fetches the sample.
        env: the environment of the git and DVC commands (default: this process's); this interpreter's
            ``bin`` folder goes first on its ``PATH``, where ``dvc`` is.
    """
    skipped = (*ALWAYS_LEFT_OUT, *leave_out)
    for rel in project_files():
        source = ROOT / rel
        if (source.is_file() or source.is_symlink()) and not rel.startswith(skipped):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel, follow_symlinks=False)  # the Lambda's link to the contract stays one
    if train:
        params = yaml.safe_load((dest / "params.yaml").read_text(encoding="utf-8"))
        params["train"].update(train)
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    steps = [["git", "init", "-q"], ["git", "add", "-A"], ["git", *GIT_IDENTITY, "commit", "-qm", "project copy"]]
    if csv is not None:
        (dest / "data").mkdir(exist_ok=True)
        shutil.copy2(csv, dest / "data" / "student_performance.csv")
        steps.insert(1, ["dvc", "add", "-q", "data"])
    run_env = dict(os.environ if env is None else env)
    run_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), run_env.get("PATH", "")])
    for args in steps:
        subprocess.run(args, cwd=dest, env=run_env, check=True, capture_output=True)
    return dest

