"""Whether the process a record names is alive (core/liveness.py): records are tags and file names anyone can edit."""

from __future__ import annotations

import os
import socket

import pytest

from core import liveness


def test_this_process_is_alive_and_a_finished_one_is_not() -> None:
    assert liveness.alive(liveness.me()) is True
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits at once
        os._exit(0)
    os.waitpid(pid, 0)
    assert liveness.alive(liveness.Owner(host=socket.gethostname(), pid=pid, start="1")) is False


@pytest.mark.parametrize("pid", [2**31, 99999999999999999999])
def test_a_pid_no_process_can_have_is_not_alive_rather_than_a_traceback(pid: int) -> None:
    owner = liveness.parse(f"{socket.gethostname()}:{pid}:1")
    assert owner is not None and liveness.alive(owner) is False


def test_a_leftover_temp_file_naming_an_impossible_pid_is_cleaned_up(tmp_path) -> None:
    from serving import bundle
    from tests.serving.serving_helpers import build_model_dir

    out = tmp_path / "model.tar.gz"
    stray = tmp_path / f".{out.name}.3000000000.abcdefgh{bundle.TEMP_SUFFIX}"
    stray.write_bytes(b"half a tarball")
    bundle.pack(build_model_dir(tmp_path / "model"), out)
    assert out.is_file() and not stray.exists()
