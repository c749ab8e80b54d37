"""params.yaml's ``monitor:`` section is validated once, like every other section: one line naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from core.cli import UserError
from core.params import load_params
from tests.conftest import ROOT


def _write(tmp_path: Path, change) -> Path:  # noqa: ANN001 - a function editing the raw mapping
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_repository_s_monitor_section_is_valid() -> None:
    monitor = load_params(ROOT / "params.yaml").monitor
    assert monitor.drift.min_sample >= 1 and monitor.feedback.min_labels >= 1
    assert monitor.drop_fields == ()


@pytest.mark.parametrize(("change", "where"), [
    (lambda raw: raw.pop("monitor"), "monitor"),
    (lambda raw: raw["monitor"]["drift"].update(psi=0), "monitor.drift.psi"),
    (lambda raw: raw["monitor"]["drift"].update(jensen_shannon=1.5), "monitor.drift.jensen_shannon"),
    (lambda raw: raw["monitor"]["drift"].update(refused_share=-0.1), "monitor.drift.refused_share"),
    (lambda raw: raw["monitor"]["drift"].update(min_sample=0), "monitor.drift.min_sample"),
    (lambda raw: raw["monitor"]["drift"].update(typo=1), "monitor.drift.typo"),
    (lambda raw: raw["monitor"]["feedback"].update(rmse_tolerance=-1), "monitor.feedback.rmse_tolerance"),
    (lambda raw: raw["monitor"].update(drop_fields=[""]), "monitor.drop_fields"),
])
def test_a_bad_monitor_setting_is_one_line_naming_it(tmp_path: Path, change, where: str) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match=rf": {re.escape(where)}\b"):
        load_params(_write(tmp_path, change))
