"""Fixtures for the monitoring tests: the sample generator's reference profile and live traffic drawn from it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from experiments.generate import generate
from tests.conftest import write_params
from tests.monitoring.helpers import reference_profile, tarball_with_profile


@pytest.fixture(scope="session")
def profile() -> dict:
    return reference_profile()


@pytest.fixture(scope="session")
def live() -> pd.DataFrame:
    """Traffic from the training distribution: the generator with another fixed seed."""
    return generate(20_000, 11)


@pytest.fixture
def params_file(tmp_path: Path, sample_csv: Path) -> Path:
    """params.yaml with an MLflow store in the temp folder."""
    return write_params(tmp_path, sample_csv)


@pytest.fixture
def model_tarball(tmp_path: Path, profile: dict) -> Path:
    return tarball_with_profile(tmp_path / "model", profile)
