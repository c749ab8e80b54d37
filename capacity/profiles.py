"""Owns the load profiles: the offered request rate over time for ramp, spike and soak.

A profile is a list of steps (seconds, requests per second). ``ramp`` climbs in equal steps to the peak, to
find the knee; ``spike`` holds a tenth of the peak, jumps to the peak, and drops back, to see what a burst of
cold starts and throttles does and how fast the chain recovers; ``soak`` holds half the peak, to see drift.
"""

from __future__ import annotations

from dataclasses import dataclass

PROFILES = ("ramp", "spike", "soak")
MAX_DURATION_S = 600.0
MAX_RPS = 200.0


@dataclass(frozen=True)
class Step:
    seconds: float
    rps: float


def build(profile: str, *, peak_rps: float, duration_s: float, steps: int = 8, start_rps: float | None = None
          ) -> list[Step]:
    """The steps of ``profile``; ValueError for an unknown profile or a rate or duration out of bounds."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    if not 0 < peak_rps <= MAX_RPS:
        raise ValueError(f"peak rate must be above 0 and at most {MAX_RPS:g} requests/s, got {peak_rps:g}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be above 0 and at most {MAX_DURATION_S:g} s, got {duration_s:g}")
    if profile == "soak":
        return _offering(profile, [Step(duration_s, peak_rps / 2)])
    if profile == "spike":
        low = max(peak_rps / 10, 0.5)
        return _offering(profile, [Step(duration_s * 0.3, low), Step(duration_s * 0.3, peak_rps),
                                   Step(duration_s * 0.4, low)])
    if steps < 2:
        raise ValueError(f"a ramp needs at least 2 steps, got {steps}")
    first = peak_rps / steps if start_rps is None else start_rps
    if not 0 < first <= peak_rps:
        raise ValueError(f"start rate must be above 0 and at most the peak ({peak_rps:g}), got {first:g}")
    rise = (peak_rps - first) / (steps - 1)
    return _offering(profile, [Step(duration_s / steps, round(first + i * rise, 3)) for i in range(steps)])


def _offering(profile: str, steps: list[Step]) -> list[Step]:
    """``steps``, each checked to offer at least one request: a step that offers none measures nothing (its
    percentiles are empty), and a rate that rounds to 0 requests/s has no interval between requests at all."""
    for index, step in enumerate(steps):
        if step.seconds * step.rps < 1:
            raise ValueError(f"{profile} step {index + 1} offers {step.seconds * step.rps:.3g} requests "
                             f"({step.rps:g} requests/s for {step.seconds:g} s): each step must offer at least one; "
                             f"raise the rates or the duration")
    return steps


def rate_at(steps: list[Step], t: float) -> float | None:
    """The offered rate ``t`` seconds in, or None once the profile is over."""
    elapsed = 0.0
    for step in steps:
        elapsed += step.seconds
        if t < elapsed:
            return step.rps
    return None


def step_index(steps: list[Step], t: float) -> int | None:
    """Which step ``t`` seconds in falls into (None past the end)."""
    elapsed = 0.0
    for index, step in enumerate(steps):
        elapsed += step.seconds
        if t < elapsed:
            return index
    return None
