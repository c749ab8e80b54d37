"""The CLI runner: one line and exit 2 for a usage error, NaN included in a number range."""

from __future__ import annotations

import click
import pytest

from core.cli import FiniteRange, OutputFile, run_cli


@click.command()
@click.option("--seconds", type=FiniteRange(min=0, min_open=True, max=60), default=1.0)
def wait(seconds: float) -> None:
    click.echo(f"{seconds:g}")


@pytest.mark.parametrize(("value", "message"), [
    ("nan", "'nan' is not a number"), ("NaN", "'NaN' is not a number"), ("-1", "is not in the range 0<x<=60"),
    ("inf", "is not in the range 0<x<=60"), ("soon", "'soon' is not a valid float"),
])
def test_a_number_option_refuses_nan_as_it_refuses_a_value_out_of_range(value: str, message: str, capsys) -> None:
    # click's own FloatRange lets NaN through: every comparison with it is false.
    assert run_cli(wait, ["--seconds", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_a_number_in_range_is_read() -> None:
    assert run_cli(wait, ["--seconds", "2.5"]) == 0


@click.command()
@click.option("--out", type=OutputFile(), required=True)
def write(out) -> None:  # noqa: ANN001 - a pathlib.Path
    click.echo(out)


@pytest.mark.parametrize("value", ["dist/", "dist/.", "dist/..", ".", "..", "/"])
def test_an_output_file_that_names_a_folder_is_a_usage_error(value: str, capsys) -> None:
    # pathlib drops a trailing slash and a last ".": "dist/" would have written a file named "dist"
    assert run_cli(write, ["--out", value]) == 2
    err = capsys.readouterr().err
    assert err == f"error: Invalid value for '--out': {value!r} names a folder, not a file (end it with the " \
                  f"file's name)\n", err


def test_an_output_file_is_read_as_a_path(capsys) -> None:
    assert run_cli(write, ["--out", "dist/model.tar.gz"]) == 0
    assert capsys.readouterr().out == "dist/model.tar.gz\n"


def test_a_background_threads_error_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    # Optuna's heartbeat thread raised when its database went away mid-search: a traceback beside the one-line error
    import threading

    def fail() -> None:
        raise RuntimeError("An exception is raised during the commit.\nmore detail")

    @click.command()
    def cli() -> None:
        worker = threading.Thread(target=fail, name="heartbeat")
        worker.start()
        worker.join()

    before = threading.excepthook
    try:
        assert run_cli(cli, []) == 0
    finally:
        threading.excepthook = before
    err = capsys.readouterr().err
    assert "Traceback" not in err and err == "error: in the background (heartbeat): An exception is raised during the commit.\n", err
