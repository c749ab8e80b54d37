"""What counts as a finite number among values read from JSON or YAML."""

from __future__ import annotations

import math

import pytest

from core.numbers import finite_number


@pytest.mark.parametrize("value", [0, -3, 2.5, 10**300, -1e308, 5e-324])
def test_finite_ints_and_floats_are_numbers(value) -> None:
    assert finite_number(value)


@pytest.mark.parametrize("value", [True, False, math.nan, math.inf, -math.inf, 10**400, -(10**400), "1", None,
                                   [1.0], {"value": 1}],
                         ids=["true", "false", "nan", "inf", "-inf", "int-beyond-a-double", "-int-beyond-a-double",
                              "text", "none", "list", "mapping"])
def test_everything_else_is_not(value) -> None:
    assert not finite_number(value)
