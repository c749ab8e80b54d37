"""Odd inputs to the drift job and its glue: capture folders and files, versions, windows, profiles, summaries,
and the LABELS make variable. Each is read correctly or refused in one line; none hangs, aborts or passes as
"no drift"."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pandas as pd
import pytest

from monitoring import drift, summary
from monitoring.window import Window
from serving import contract
from tests.monitoring.helpers import DAY, HEADERS, capture_window, write_capture
from tests.workflows.conftest import ROOT, run_make

SINCE, UNTIL = "2025-12-01", "2025-12-02"
PARTITION = Path("capture", "model=student-score", "version=3", "dt=2025-12-01")


def run(params_file: Path, folder: Path, profile: Path, out: Path, *args: str) -> int:
    """The drift job on ``folder`` with ``--profile`` and no tracking, over SINCE..UNTIL unless ``args`` say."""
    window = [] if {"--since", "--days"} & set(args) else ["--since", SINCE]
    return drift.main(["--params", str(params_file), *window, "--until", UNTIL, "--capture", str(folder),
                       "--profile", str(profile), "--out", str(out), "--no-tracking", *args])


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def lines_of(records: list[dict]) -> bytes:
    return b"".join(contract.capture_line(c) for c in records)


def test_a_profile_of_another_version_is_refused_in_one_line(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given version 2's traffic, and the bundle of version 3 (its metadata says so)
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600], version="2"))
    # When drift is asked to judge version 2 against it
    code = run(params_file, folder, model_tarball, tmp_path / "r", "--version", "2")
    # Then it refuses, naming both versions
    assert code == 2
    assert "version 3" in one_line_error(capsys)
    assert not (tmp_path / "r" / "summary.json").exists()


@pytest.mark.parametrize("version", ["abc", "0", "-1", "2.0", str(2**31)])
def test_a_version_that_no_registry_can_hold_is_a_usage_error(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, version: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given version 3's traffic; when drift is asked for a version number MLflow's registry cannot hold
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600], version="3"))
    code = run(params_file, folder, model_tarball, tmp_path / "r", "--version", version)
    # Then it is refused before anything is read (MLflow answered "abc" with its own parameter message)
    assert code == 2
    assert "Invalid value for '--version'" in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_the_version_given_is_the_one_judged(tmp_path: Path, params_file: Path, model_tarball: Path,
                                             live: pd.DataFrame) -> None:
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600], version="3"))
    assert run(params_file, folder, model_tarball, tmp_path / "r", "--version", "3") in (0, 1)
    assert summary_of(tmp_path / "r")["model"]["version"] == "3"


def test_records_of_another_schema_are_an_error_not_no_drift(
        tmp_path: Path, params_file: Path, model_tarball: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given 600 records that hold none of the profiled features
    records = contract.prediction_records(request_id="req-other", records=[{"sqft": 1200, "rooms": 3}] * 600,
                                          predictions=[70.0] * 600, headers=HEADERS, latency_ms=1.0, now=DAY)
    folder = write_capture(tmp_path / "bucket", records)
    # When drift compares them with the profile
    code = run(params_file, folder, model_tarball, tmp_path / "r")
    # Then it says none of the features was captured, instead of "no drift"
    assert code == 2
    assert "none of the profile's" in one_line_error(capsys)


def test_a_symlinked_capture_folder_is_read(tmp_path: Path, params_file: Path, model_tarball: Path,
                                            live: pd.DataFrame) -> None:
    # Given a bucket whose capture folder is a symlink to the real one
    write_capture(tmp_path / "real", capture_window(live.iloc[:600]))
    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket" / "capture").symlink_to(tmp_path / "real" / "capture", target_is_directory=True)
    # When drift reads the bucket
    assert run(params_file, tmp_path / "bucket", model_tarball, tmp_path / "r") == 0
    # Then the records behind the link count
    assert (summary_of(tmp_path / "r")["records"], summary_of(tmp_path / "r")["files"]) == (600, 1)


def test_a_symlink_loop_or_a_second_link_to_a_folder_is_read_once(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame) -> None:
    # Given a capture folder holding a link back to itself, and a second link to the same folder
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600]))
    (folder / "capture" / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "again").symlink_to(folder / "capture", target_is_directory=True)
    # When drift reads it, then it ends, and every file is read once
    assert run(params_file, folder, model_tarball, tmp_path / "r") == 0
    assert (summary_of(tmp_path / "r")["records"], summary_of(tmp_path / "r")["files"]) == (600, 1)


@pytest.fixture
def lock_out(tmp_path: Path):
    """chmod 000 on a path for the test, restored after it; skips where permissions do not stop this process."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        probe.read_text()
        pytest.skip("this process reads a chmod 000 file (root, or CAP_DAC_OVERRIDE): nothing would be unreadable")
    except PermissionError:
        pass
    finally:
        probe.chmod(0o600)
    locked: list[tuple[Path, int]] = []

    def lock(path: Path) -> Path:
        locked.append((path, path.stat().st_mode))
        path.chmod(0)
        return path

    yield lock
    for path, mode in reversed(locked):
        path.chmod(mode)


@pytest.mark.parametrize("where", ["capture folder", "partition folder", "part file"])
def test_a_capture_folder_or_file_that_cannot_be_read_is_exit_2_naming_it(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, lock_out, where: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a window of 600 records, one folder or file of which this process may not read
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600]))
    partition = folder / PARTITION
    locked = lock_out({"capture folder": folder, "partition folder": partition,
                       "part file": next(partition.iterdir())}[where])
    # When drift reads the window
    code = run(params_file, folder, model_tarball, tmp_path / "r")
    # Then it stops in one line naming what it could not read, instead of "not enough data" with exit 0
    assert code == 2
    err = one_line_error(capsys)
    assert f"{locked} cannot be read (Permission denied)" in err, err
    assert not (tmp_path / "r").exists()


def test_an_unreadable_folder_outside_the_window_is_not_opened(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, lock_out) -> None:
    # Given the window's 600 records, and another day's partition this process may not read
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600]))
    other_day = folder / PARTITION.parent / "dt=2025-11-02"
    other_day.mkdir()
    lock_out(other_day)
    # When drift reads the window, then the other day is ruled out by its folder name alone
    assert run(params_file, folder, model_tarball, tmp_path / "r") == 0
    assert summary_of(tmp_path / "r")["records"] == 600


UNREADABLE_TESTS = "cannot_be_read or outside_the_window_is_not_opened"


@pytest.mark.skipif(os.geteuid() != 0 or os.environ.get("CAPTURE_TESTS_WITHOUT_DAC") == "1",
                    reason="runs the chmod 000 tests again only where root skipped them")
def test_the_unreadable_capture_tests_run_without_root_s_permission_override() -> None:
    # As root (CI's containers, this machine) the tests above skip: root reads a chmod 000 file. They run again
    # here in a pytest whose bounding set lacks CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (util-linux setpriv),
    # so permissions stop it as they stop any other user, and each must pass, not skip.
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("util-linux setpriv is not installed")
    done = subprocess.run(
        [setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "pytest", __file__, "-q",
         "-p", "no:cacheprovider", "-k", UNREADABLE_TESTS, "-rs"],
        cwd=ROOT, env={**os.environ, "CAPTURE_TESTS_WITHOUT_DAC": "1"}, capture_output=True, text=True,
        timeout=600, check=False)
    assert done.returncode == 0 and "4 passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]


def test_a_multi_member_gzip_is_read_whole(tmp_path: Path, params_file: Path, model_tarball: Path,
                                           live: pd.DataFrame) -> None:
    # Given one object that is two gzip members back to back (S3/Firehose concatenation; zcat reads both)
    records = capture_window(live.iloc[:600])
    partition = tmp_path / "bucket" / PARTITION
    partition.mkdir(parents=True)
    (partition / "part-0.gz").write_bytes(gzip.compress(lines_of(records[:300])) + gzip.compress(lines_of(records[300:])))
    # When drift reads it, then all 600 records count and nothing is called damaged
    assert run(params_file, tmp_path / "bucket", model_tarball, tmp_path / "r") == 0
    got = summary_of(tmp_path / "r")
    assert (got["records"], got["damaged_files"], got["unreadable_lines"]) == (600, 0, 0)


def test_a_corrupt_second_gzip_member_keeps_the_first(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                      live: pd.DataFrame) -> None:
    records = capture_window(live.iloc[:600])
    partition = tmp_path / "bucket" / PARTITION
    partition.mkdir(parents=True)
    (partition / "part-0.gz").write_bytes(gzip.compress(lines_of(records)) + b"\x1f\x8bnot a gzip member")
    assert run(params_file, tmp_path / "bucket", model_tarball, tmp_path / "r") == 0
    got = summary_of(tmp_path / "r")
    assert (got["records"], got["damaged_files"]) == (600, 1)


def _odd(record: dict, version: str) -> bytes:
    return contract.capture_line(record | {"model_version": version})


@pytest.mark.parametrize("odd", [
    pytest.param(lambda r: _odd(r, "²"), id="superscript-digit-version"),
    pytest.param(lambda r: _odd(r, "9" * 5000), id="5000-digit-version"),
    pytest.param(lambda r: b"[" * 100_000 + b"\n", id="deeply-nested-line"),
])
def test_one_odd_capture_line_costs_its_line_not_the_job(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                         live: pd.DataFrame, odd) -> None:
    # Given a window of 600 good records and one odd line
    records = capture_window(live.iloc[:600])
    partition = tmp_path / "bucket" / PARTITION
    partition.mkdir(parents=True)
    (partition / "part-0").write_bytes(lines_of(records) + odd(records[0]))
    # When drift reads it (and picks the busiest version itself), then the job still answers for version 3
    bare = _bare_profile(tmp_path, model_tarball)
    assert drift.main(["--params", str(params_file), "--since", SINCE, "--until", UNTIL, "--capture",
                       str(tmp_path / "bucket"), "--profile", str(bare), "--out", str(tmp_path / "r"),
                       "--no-tracking"]) == 0
    assert summary_of(tmp_path / "r")["records"] == 600


def _bundle(folder: Path, profile: dict, metadata: str, kind: str) -> Path:
    """A --profile bundle with ``metadata`` as its metadata.json: a model directory or a model.tar.gz."""
    import tarfile

    from serving.profile import write_profile

    model = folder / "model"
    model.mkdir(parents=True)
    write_profile(model, profile)
    (model / "metadata.json").write_text(metadata)
    if kind == "directory":
        return model
    with tarfile.open(folder / "model.tar.gz", "w:gz") as tar:
        for file in model.iterdir():
            tar.add(file, arcname=file.name)
    return folder / "model.tar.gz"


@pytest.mark.parametrize("kind", ["directory", "tarball"])
@pytest.mark.parametrize(("metadata", "message"), [
    ("{not json", "not valid JSON"),
    ("[3]", "the bundle metadata must be a JSON object, it is a JSON list"),
    ('{"registered_name": "student-score", "version": {"n": 3}}', "'version' must be a model version number"),
    ('{"registered_name": "student-score", "version": "3\\n"}', "'version' must be a model version number"),
    ('{"registered_name": ["student-score"], "version": "3"}', "'registered_name' must be a model name"),
], ids=["not-json", "a-list", "a-dict-version", "a-version-with-a-line-break", "a-list-name"])
def test_damaged_bundle_metadata_is_refused_in_one_line_naming_the_file(
        tmp_path: Path, params_file: Path, profile: dict, live: pd.DataFrame, kind: str, metadata: str,
        message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given version 3's traffic, and a --profile bundle whose metadata.json is damaged
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600]))
    bundle = _bundle(tmp_path / "given", profile, metadata, kind)
    # When drift reads the bundle, then it names the file and what is wrong, instead of an empty window or a trace
    assert run(params_file, folder, bundle, tmp_path / "r") == 2
    err = one_line_error(capsys)
    assert "metadata.json" in err and str(bundle) in err and message in err, err
    assert not (tmp_path / "r").exists()


def test_a_model_tarball_with_a_changed_byte_is_refused_in_one_line(
        tmp_path: Path, params_file: Path, model_tarball: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a model.tar.gz with one byte changed near its end: the first byte of its last compressed block (a flush
    # makes one start at the archive's last 512 bytes) names a block type that does not exist. Header reading
    # stops before it (tarfile would wrap the error then); reading a member's data runs into it.
    tar = gzip.decompress(model_tarball.read_bytes())
    deflate = zlib.compressobj(wbits=31)
    head = deflate.compress(tar[:-512]) + deflate.flush(zlib.Z_FULL_FLUSH)
    data = bytearray(head + deflate.compress(tar[-512:]) + deflate.flush())
    data[len(head)] |= 0x06
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(bytes(data))
    (tmp_path / "bucket").mkdir()
    # When drift reads it, then the file is named, not an "unexpected error" of zlib's
    assert run(params_file, tmp_path / "bucket", broken, tmp_path / "r") == 2
    assert f"{broken}: not a readable tar.gz" in one_line_error(capsys)


@pytest.mark.parametrize("version", ["", " ", "3\n", "3\r\n"], ids=["empty", "blank", "newline", "crlf"])
def test_a_record_whose_version_is_empty_or_breaks_a_line_is_an_unreadable_line(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, version: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given 600 records whose model_version says nothing (or holds a line break)
    records = [c | {"model_version": version} for c in capture_window(live.iloc[:600])]
    partition = tmp_path / "bucket" / PARTITION
    partition.mkdir(parents=True)
    (partition / "part-0").write_bytes(lines_of(records))
    # When drift picks the version itself, then they are counted as unreadable lines, not taken for a version ""
    assert drift.main(["--params", str(params_file), "--since", SINCE, "--until", UNTIL, "--capture",
                       str(tmp_path / "bucket"), "--profile", str(_bare_profile(tmp_path, model_tarball)), "--out",
                       str(tmp_path / "r"), "--no-tracking"]) == 0
    assert (summary_of(tmp_path / "r")["unreadable_lines"], summary_of(tmp_path / "r")["records"]) == (600, 0)
    assert "600 unreadable capture line(s) skipped" in capsys.readouterr().out


def test_a_line_break_in_an_input_stays_inside_the_one_line_error(
        tmp_path: Path, params_file: Path, model_tarball: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, tmp_path / "no\nsuch", model_tarball, tmp_path / "r") == 2
    assert "no\\nsuch not found" in one_line_error(capsys)


@pytest.mark.parametrize("time", ["2025-12-01 10:00:00.000Z", "2025-12-01T10:00:00+05:00", "2025-12-01T10:00:00Z",
                                  "2025-12-01", "2025-13-01T00:00:00.000Z", "yesterday",
                                  "２０２５-12-01T10:00:00.000Z"],
                         ids=["space", "offset", "no-millis", "date-only", "month-13", "word", "wide-digits"])
def test_a_capture_time_not_in_the_contract_s_form_is_an_unreadable_line_not_misplaced(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, time: str) -> None:
    # Given the window's 600 records and one whose time is not written as the contract writes it (times are compared
    # as text: "2025-12-01 10:00" sorts before the day starts, "yesterday" after every window)
    records = capture_window(live.iloc[:600])
    partition = tmp_path / "bucket" / PARTITION
    partition.mkdir(parents=True)
    (partition / "part-0").write_bytes(lines_of(records) + contract.capture_line(records[0] | {"time": time}))
    # When drift reads the window, then that line is counted as unreadable, neither dropped unsaid nor counted in
    assert run(params_file, tmp_path / "bucket", model_tarball, tmp_path / "r") == 0
    got = summary_of(tmp_path / "r")
    assert (got["records"], got["unreadable_lines"]) == (600, 1)


def _bare_profile(tmp_path: Path, tarball: Path) -> Path:
    """The tarball's profile.json alone: no metadata, so the version is the busiest one's."""
    import tarfile

    with tarfile.open(tarball) as tar:
        data = tar.extractfile("profile.json").read()
    path = tmp_path / "profile.json"
    path.write_bytes(data)
    return path


def test_the_busiest_version_ignores_versions_that_are_not_plain_numbers() -> None:
    records = [{"model_version": v} for v in ("²", "²", "²", "9" * 5000, "9" * 5000, "9" * 5000, "3", "3", "3")]
    assert drift.busiest_version(records) in {"²", "9" * 5000, "3"}
    assert drift.busiest_version([{"model_version": "12"}, {"model_version": "9"}]) == "12", "tie: the higher"


@pytest.mark.parametrize("window", [["--since", "0300-01-01"], ["--days", "600000"]], ids=["since-300", "days"])
def test_a_window_starting_before_year_1000_still_holds_its_records(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, window: list[str]) -> None:
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600]))
    assert run(params_file, folder, model_tarball, tmp_path / "r", *window) == 0
    assert summary_of(tmp_path / "r")["records"] == 600


def test_capture_times_before_year_1000_and_1970_sort_as_text() -> None:
    # Given times in the year 300, just before 1970 and in 2025, when written as capture times
    times = [contract.capture_time(t) for t in (-52_000_000_000.25, -0.5, 0.0, DAY + 0.25)]
    # Then each has a four-digit year and non-negative milliseconds, and text order is time order
    assert times[0].startswith("0322-") and times[1] == "1969-12-31T23:59:59.500Z", times
    assert times[3] == "2025-12-01T00:00:00.250Z" and times == sorted(times)
    assert Window.of("0300-01-01", "0300-01-03", default_days=None).days() == ("0300-01-01", "0300-01-02")


def test_a_window_writes_its_bounds_once_not_once_per_record(monkeypatch: pytest.MonkeyPatch) -> None:
    window = Window.of("2025-12-01", "2025-12-02", default_days=None)
    written, real = [], contract.capture_time
    monkeypatch.setattr(contract, "capture_time", lambda t: written.append(t) or real(t))

    inside = [window.contains(f"2025-12-0{d}T{h:02d}:00:00.000Z") for d in (1, 2) for h in range(24)]

    assert inside == [True] * 24 + [False] * 24, "since is inclusive and until exclusive"
    assert len(written) == 2, f"the two bounds, written once for 48 records: {len(written)} writes"
    assert window.bounds() == {"since": "2025-12-01T00:00:00.000Z", "until": "2025-12-02T00:00:00.000Z"}
    assert len(written) == 2


def test_days_shorter_than_a_microsecond_is_exit_2_naming_days(tmp_path: Path, params_file: Path,
                                                              model_tarball: Path, capsys) -> None:
    (tmp_path / "bucket").mkdir()
    assert drift.main(["--params", str(params_file), "--days", "1e-12", "--capture", str(tmp_path / "bucket"),
                       "--profile", str(model_tarball), "--no-tracking", "--out", str(tmp_path / "r")]) == 2
    err = one_line_error(capsys)
    assert "--days 1e-12" in err and "--since" not in err, err


def test_days_with_since_is_exit_2_not_ignored(tmp_path: Path, params_file: Path, model_tarball: Path,
                                              live: pd.DataFrame, capsys) -> None:
    # Given a week of captures from 2025-12-01, and a user asking for "7 days from the 1st"
    write_capture(tmp_path / "bucket", capture_window(live.iloc[:600]))
    # When drift is given --since and --days together
    code = run(params_file, tmp_path / "bucket", model_tarball, tmp_path / "r",
               "--since", SINCE, "--days", "7")
    # Then it says the two clash instead of reading --since to --until and calling that the week asked for
    assert code == 2
    err = one_line_error(capsys)
    assert "--days 7 and --since 2025-12-01" in err, err
    assert not (tmp_path / "r").exists()


def _python(*args: str) -> subprocess.CompletedProcess:
    """A module run in a child with a timeout: a read that hangs fails the test instead of hanging it."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env=os.environ | {"PYTHONPATH": str(ROOT)})


def test_a_fifo_summary_is_said_in_one_line_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "summary.json"
    os.mkfifo(fifo)
    result = _python("monitoring.summary", str(fifo))
    assert result.returncode == 0 and "No drift summary at" in result.stdout and not result.stderr, result


def test_a_deeply_nested_summary_is_said_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "summary.json"
    path.write_text("[" * 100_000)
    assert summary.main([str(path)]) == 0
    out = capsys.readouterr()
    assert "No drift summary at" in out.out and "RecursionError" in out.out and not out.err


@pytest.mark.parametrize("where", ["profile.json", "model.tar.gz", "model/profile.json"])
def test_a_fifo_profile_is_refused_not_waited_on(tmp_path: Path, params_file: Path, where: str) -> None:
    fifo = tmp_path / where
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    (tmp_path / "bucket").mkdir()
    result = _python("monitoring.drift", "--params", str(params_file), "--capture", str(tmp_path / "bucket"),
                     "--profile", str(tmp_path / where.split("/")[0]), "--no-tracking", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "not a regular file" in result.stderr, result
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("labels", ["scratch/it's labels.csv", "x' ; touch {tmp}/INJECTED ; echo '",
                                    'x" ; touch {tmp}/INJECTED ; echo "', "`touch {tmp}/INJECTED`"])
@pytest.mark.parametrize("target", ["feedback", "append-labels"])
def test_labels_reach_the_command_as_one_argument_never_as_shell_code(tmp_path: Path, target: str,
                                                                    labels: str) -> None:
    # Given a hostile LABELS, and PY replaced by a program that prints its arguments one per line
    value = labels.format(tmp=tmp_path)
    show = tmp_path / "show"
    show.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    show.chmod(0o755)
    # When the target runs (setup taken as done)
    result = run_make(ROOT, "-o", "setup", target, f"LABELS={value}", f"PY={show}")
    # Then the value arrives whole as the --labels argument, and nothing in it ran
    assert result.returncode == 0, result.stderr
    args = result.stdout.splitlines()
    assert args[args.index("--labels") + 1] == value, result.stdout
    assert not (tmp_path / "INJECTED").exists()


def test_an_empty_labels_is_refused_by_the_target(tmp_path: Path) -> None:
    result = run_make(ROOT, "-o", "setup", "feedback", "LABELS=", f"PY={tmp_path / 'never-run'}")
    assert result.returncode == 2 and "error: set LABELS=" in result.stderr
