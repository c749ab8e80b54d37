"""The CLI runner: one line and exit 2 for a usage error, NaN included in a number range."""

from __future__ import annotations

import click
import pytest

from core.cli import FiniteRange, run_cli


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
