"""Every synth the README documents (`make synth|deploy|deploy-storage|infra-bootstrap|cdk-bootstrap` with their
INFRA_ENV and INFRA_CONTEXT) synthesizes with cdk-nag and no unacknowledged finding.

The commands are read from the README itself, so a documented command that would fail cannot be added without
this test failing; its placeholders (OWNER/REPO, BUCKET, ...) are replaced by example values, and a placeholder
this test does not know fails it rather than being synthesized verbatim.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path

import pytest

from infra.app import build_app
from infra.nag import synth_or_report

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(r"make (synth|deploy-storage|deploy|infra-bootstrap|cdk-bootstrap)\b([^`\n]*)")
PLACEHOLDERS = {
    "OWNER/REPO": "acme/student-score",
    "MLFLOW_SERVER_ARN": "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team",
    "OIDC_PROVIDER_ARN": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com",
    "ALARM_EMAIL": "oncall@example.com",
    "BUCKET": "acme-student-score-artifacts",
}
UNKNOWN_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b")


def _context(arguments: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """INFRA_ENV and the ``-c key=value`` pairs of INFRA_CONTEXT in one documented make command."""
    words = shlex.split(arguments, comments=True)
    env, context = "dev", []
    for word in words:
        name, _, value = word.partition("=")
        if name == "INFRA_ENV":
            env = value
        elif name == "INFRA_CONTEXT":
            pairs = shlex.split(value)
            assert all(flag == "-c" for flag in pairs[::2]), value
            for pair in pairs[1::2]:
                key, _, raw = pair.partition("=")
                for placeholder, example in PLACEHOLDERS.items():
                    raw = raw.replace(placeholder, example)
                assert not UNKNOWN_PLACEHOLDER.search(raw), f"unknown placeholder in the README: {pair}"
                context.append((key, raw))
    return env, tuple(sorted(context))


def documented() -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    """Each distinct (env, context) the README documents, keyed ``target/env/context keys`` by the first command
    that shows it."""
    variants: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    for match in COMMAND.finditer((ROOT / "README.md").read_text(encoding="utf-8")):
        env, context = _context(match.group(2))
        if (env, context) not in variants.values():
            keys = "+".join(key for key, _ in context) or "defaults"
            variants[f"{match.group(1)}/{env}/{keys}"] = (env, context)
    return variants


VARIANTS = documented()


def test_the_readme_documents_the_synths_a_first_deploy_needs() -> None:
    contexts = [dict(context) for _, context in VARIANTS.values()]
    assert ("prod" in {env for env, _ in VARIANTS.values()}), VARIANTS
    assert any("github_repo" in c and "data_bucket" in c and "mlflow_tracking_server_arn" not in c for c in contexts)
    assert any("mlflow_tracking_server_arn" in c and "mlflow_artifact_uri" in c for c in contexts)
    assert any("alarm_email" in c for c in contexts)
    assert any("github_oidc_provider_arn" in c for c in contexts)


@pytest.mark.parametrize("command", sorted(VARIANTS))
def test_every_documented_synth_passes_cdk_nag(command: str, tmp_path: Path) -> None:
    env, context = VARIANTS[command]
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(b"placeholder: synth only hashes the model asset")
    app = build_app(context={**dict(context), "env": env, "model_tarball": str(tarball)}, outdir=str(tmp_path))
    err = io.StringIO()

    assert synth_or_report(app, err) == 0, f"{command}:\n{err.getvalue()}"
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert [p["conclusion"] for p in report["pluginReports"]] == ["success"]
    stacks = {p.name.removesuffix(".template.json") for p in tmp_path.glob("*.template.json")}
    assert ("StudentScore-Bootstrap" in stacks) == ("github_repo" in dict(context)), stacks
