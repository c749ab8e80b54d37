"""Owns how a cdk-nag finding is acknowledged: always on the construct it concerns, always with a reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

MIN_REASON = 20
PLUGIN = "AwsSolutions"


def acknowledge(construct: IConstruct, reason: str, *rule_ids: str) -> None:
    """Acknowledge cdk-nag findings on ``construct`` (cdk-nag 3: one id per finding, e.g. ``AwsSolutions-IAM5[Resource::*]``).

    Args:
        construct: where the finding is reported (acknowledgments apply to that construct's own resources).
        reason: why the finding is accepted; required and meant for a reviewer.
        rule_ids: the findings' ids.
    """
    if len(reason.strip()) < MIN_REASON:
        raise ValueError(f"an acknowledgment needs a real reason, got {reason!r}")
    # cdk-nag reports as the "AwsSolutions" validation plugin; its findings are acknowledged under that prefix.
    ids = [rule_id if rule_id.startswith(f"{PLUGIN}::") else f"{PLUGIN}::{rule_id}" for rule_id in rule_ids]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in ids))
