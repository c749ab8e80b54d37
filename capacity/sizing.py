"""Owns the sizing model: from a measured service time to max_concurrency, provisioned concurrency and cost.

The model, and what each step assumes:
- Concurrency (Little's law): a sustained ``rps`` with service time ``S`` keeps ``rps x S`` invocations in
  flight. A serverless endpoint runs one invocation per instance, so it throttles past
  ``max_concurrency / S`` requests/s (the knee, for evenly spaced requests). Independent callers arrive at
  random, and the number in flight is then Poisson-distributed around ``rps x S`` (an M/G/infinity queue), so
  ``max_concurrency`` covers the larger of ``rps x S / UTILISATION`` and ``rps x S + 3 sqrt(rps x S)`` (the
  mean plus three standard deviations: throttled less than about 0.3 % of the time, before the Lambda's retry).
- Memory: serverless assigns vCPUs in proportion to memory. One request of this model uses one core, so more
  memory is assumed to buy no speed, and less memory to slow a request in proportion: the cost per request
  (memory x time) is then the same below the measured size and higher above it, so the advisor keeps the size
  the latency was measured at (and says when no size meets the p99 target).
- Provisioned concurrency: needed when a cold start would break the p99 target; then the average concurrency
  is kept warm.
- Cost: requests x service time x GB x the on-demand price; provisioned concurrency adds GB x seconds x its
  price, and requests it serves are billed at its inference price. Data processed is requests x body size.
- Real-time break-even: the sustained rate at which on-demand serverless costs as much as one always-on
  instance (which serves ``vcpus x UTILISATION / S`` requests/s with one worker per vCPU). If that rate is past
  what the instance serves, there is none: a fleet's cost per request never falls below one instance's at its
  capacity, where serverless still costs less, so real-time never does (None).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SECONDS_PER_MONTH = 730 * 3600  # AWS bills a month as 730 hours
UTILISATION = 0.7
MAX_CONCURRENCY = 200  # per endpoint ("Deploy models with Amazon SageMaker Serverless Inference")
# What one serverless invocation may take ("Invoke a serverless endpoint",
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html): a 4 MB request (read here
# as the larger 4 MiB) answered within 1 minute. A measurement beyond either was not of a served request.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_SERVICE_S = 60.0


def predicted_knee_rps(*, max_concurrency: int, service_time_s: float) -> float:
    """Requests/s at which ``max_concurrency`` instances of ``service_time_s`` each are all busy."""
    if service_time_s <= 0:
        raise ValueError(f"service time must be positive, got {service_time_s}")
    return max_concurrency / service_time_s


def _price(prices: dict[str, Any], key: str) -> float | None:
    entry = prices.get("serverless", {}).get(key) or {}
    value = entry.get("value")
    return None if value is None else float(value)


@dataclass(frozen=True)
class Advice:
    memory_mb: int
    max_concurrency: int
    provisioned_concurrency: int
    knee_rps: float
    monthly_cost: float | None
    cost_left_out: tuple[str, ...]
    break_even_rps: dict[str, float | None]  # None: real-time never costs less
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def advise(*, rps: float, p99_ms: float, service_time_s: float, p99_measured_ms: float, memory_mb: int,
           cold_start_s: float | None, request_bytes: float, prices: dict[str, Any]) -> Advice:
    """The recommendation for a sustained ``rps`` with a ``p99_ms`` target, from one load-test measurement."""
    if rps <= 0 or p99_ms <= 0 or service_time_s <= 0:
        raise ValueError("the target rate, the p99 target and the service time must be positive")
    notes = []
    if p99_measured_ms > p99_ms:
        notes.append(f"the measured p99 at low load ({p99_measured_ms:.0f} ms) is already above the target "
                     f"({p99_ms:.0f} ms): no serverless size is expected to meet it; measure at a larger "
                     "memory size, or send fewer records per request")
    in_flight = rps * service_time_s
    max_concurrency = max(1, math.ceil(max(in_flight / UTILISATION, in_flight + 3 * math.sqrt(in_flight))))
    if max_concurrency > MAX_CONCURRENCY:
        notes.append(f"{max_concurrency} concurrent invocations are needed, above the per-endpoint maximum of "
                     f"{MAX_CONCURRENCY}: batch records into fewer requests, or use a real-time endpoint")
        max_concurrency = MAX_CONCURRENCY
    provisioned = 0
    if cold_start_s is None:
        notes.append("cold start unknown: provisioned concurrency not sized")
    elif cold_start_s > 0 and p99_measured_ms <= p99_ms < (cold_start_s + service_time_s) * 1000:
        provisioned = min(max_concurrency, max(1, math.ceil(in_flight)))
        notes.append(f"a cold start ({cold_start_s:.1f} s) would break the p99 target: keep {provisioned} warm")
    gb = memory_mb / 1024
    requests = rps * SECONDS_PER_MONTH
    left_out = []
    on_demand = _price(prices, "on_demand_per_gb_second")
    cost: float | None = None
    if on_demand is not None:
        rate = on_demand
        if provisioned:
            warm_share = min(1.0, provisioned / in_flight) if in_flight > 0 else 1.0  # rps x S may underflow to 0
            pc_inference = _price(prices, "provisioned_inference_per_gb_second")
            if pc_inference is None:  # billed at the on-demand rate instead, and said so
                left_out.append("provisioned_inference_per_gb_second")
                pc_inference = on_demand
            rate = (1 - warm_share) * on_demand + warm_share * pc_inference
        compute = requests * service_time_s * gb * rate
        cost = compute
        if provisioned:
            reserved = _price(prices, "provisioned_per_gb_second")
            if reserved is None:
                left_out.append("provisioned_per_gb_second")
            else:
                cost += provisioned * gb * SECONDS_PER_MONTH * reserved
        data = _price(prices, "data_processed_per_gb")
        if data is None:
            left_out.append("data_processed_per_gb")
        else:
            cost += requests * request_bytes / 1e9 * data
    else:
        left_out.append("on_demand_per_gb_second")
    break_even = {}
    # A free (0) or unknown on-demand price, or one so small the product underflows to 0, has no break-even.
    on_demand_per_request = service_time_s * gb * on_demand if on_demand else 0.0
    for name, instance in (prices.get("instances") or {}).items():
        if on_demand_per_request > 0 and math.isfinite(even := float(instance["per_hour"]) / 3600
                                                          / on_demand_per_request):
            capacity = float(instance["vcpus"]) * UTILISATION / service_time_s
            break_even[name] = round(even, 2) if even <= capacity else None
    return Advice(memory_mb=memory_mb, max_concurrency=max_concurrency, provisioned_concurrency=provisioned,
                  knee_rps=round(predicted_knee_rps(max_concurrency=max_concurrency,
                                                    service_time_s=service_time_s), 2),
                  monthly_cost=None if cost is None else round(cost, 2), cost_left_out=tuple(left_out),
                  break_even_rps=break_even, notes=tuple(notes))
