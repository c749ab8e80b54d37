"""Owns one question asked of every number read from JSON or YAML: is it a finite number a float can hold?"""

from __future__ import annotations

import math
from typing import Any


def finite_number(value: Any) -> bool:
    """An int or float that is not a bool, not NaN or infinite, and not an integer beyond a double's range.

    JSON and YAML read ``true`` as a bool (an int to Python) and a long run of digits as an int of any size,
    on which ``math.isfinite`` raises OverflowError instead of answering.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
