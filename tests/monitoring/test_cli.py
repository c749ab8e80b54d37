"""How the monitoring commands read their shared options and exit (monitoring/cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring import drift, feedback


@pytest.mark.parametrize("command", ["drift", "feedback"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_capture_option_is_a_usage_error_not_the_default_folder(
        tmp_path: Path, params_file: Path, capsys: pytest.CaptureFixture[str], command: str, value: str) -> None:
    # An unset CI variable (--capture "$CAPTURE") read as "not given" analysed params.yaml's folder instead
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,actual\nr1,70\n")
    argv = (["--capture", value] if command == "drift" else ["--labels", str(labels), "--capture", value])
    code = {"drift": drift.main, "feedback": feedback.main}[command](["--params", str(params_file), *argv])
    err = capsys.readouterr().err
    assert code == 2 and "--capture" in err and "is empty" in err and err.count("\n") == 1, err
