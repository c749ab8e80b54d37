"""Owns cdk-nag's findings: how one is acknowledged (on the construct it concerns, with a reason), and how the
unacknowledged ones of a failed synth are reported (one line each, no traceback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from aws_cdk import Acknowledgment, App, Validations
from constructs import IConstruct

REPORT = "validation-report.json"  # what CDK's policy validation writes into the cloud assembly

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


def findings(report_file: Path) -> list[str]:
    """One line per unacknowledged finding in a validation report: rule id, where, the rule's first sentence."""
    report = json.loads(report_file.read_text(encoding="utf-8"))
    lines = []
    for plugin in report.get("pluginReports", []):
        for violation in plugin.get("violations", []):
            what = violation.get("description", "").split(". ")[0].rstrip(".")
            for construct in violation.get("violatingConstructs", []):
                lines.append(f"{violation['ruleName']} at {construct['constructPath']}: {what}")
    return lines


def synth_or_report(app: App, err: TextIO | None = None) -> int:
    """Synthesize ``app``; on a validation failure write ``error: cdk-nag ...`` per finding and return 1.

    Any other synth error is one ``error:`` line too: the CLI user sees what is wrong, not jsii's stack.
    """
    err = err or sys.stderr
    try:
        app.synth()
    except RuntimeError as error:  # jsii raises JavaScript errors as RuntimeError
        report = Path(app.outdir) / REPORT
        lines = findings(report) if "ValidationFailed" in str(error) and report.is_file() else []
        for line in lines:
            print(f"error: cdk-nag {line}", file=err)
        if lines:
            print(f"error: {len(lines)} unacknowledged cdk-nag finding(s); fix them or acknowledge each with a "
                  f"reason (infra/nag.py); full report: {report}", file=err)
        else:
            print(f"error: synth failed: {str(error).strip().splitlines()[0]}", file=err)
        return 1
    return 0
