"""The diagnostic figures: every text they hold is inside the figure, whatever the feature names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments import plots


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures saved while a test runs, as drawn."""
    figures: list[Figure] = []
    save = plots._save

    def keep(fig: Figure, path: Path, **kwargs: float) -> Path:
        figures.append(fig)
        return save(fig, path, **kwargs)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def overflow_in(fig: Figure) -> float:
    """How far, in inches, what the figure draws (every text included) reaches past its edges; 0 if it fits."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # as the save draws it
    drawn, edges = fig.get_tightbbox(canvas.get_renderer()), fig.bbox_inches
    return max(0.0, edges.x0 - drawn.x0, drawn.x1 - edges.x1, edges.y0 - drawn.y0, drawn.y1 - edges.y1)


@pytest.mark.parametrize("names", [
    ["Hours_Studied", "Attendance", "Gender"],
    ["Extracurricular_Activities", "Parental_Education_Level", "x"],
    [f"a_feature_name_a_spreadsheet_would_truncate_{i}" for i in range(30)],
    ["short", "a" * 150],  # wider than the figure's default width: the figure widens
])
@pytest.mark.parametrize("scale", [1.0, -3e7, 1e-6])  # exam scores, then a target of another magnitude and sign
def test_no_text_of_any_figure_is_cut_off(tmp_path: Path, drawn: list[Figure], names: list[str], scale: float) -> None:
    rng = np.random.default_rng(0)
    actual = rng.normal(70, 4, 500) * scale
    predicted = actual + rng.normal(0, 2, 500) * abs(scale)
    plots.predicted_vs_actual(actual, predicted, tmp_path / "a.png")
    plots.residuals(actual, predicted, tmp_path / "b.png")
    plots.feature_importance(names, list(rng.random(len(names)) * 1e4), tmp_path / "c.png")
    values = list(rng.normal(2.1, 0.1, 25) * abs(scale))
    plots.optimisation_history(values, list(np.minimum.accumulate(values)), tmp_path / "d.png")

    assert len(drawn) == 4
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in "abcd")
    for fig in drawn:
        assert overflow_in(fig) < 0.01, [ax.get_title(loc="left") or ax.get_title(loc="right") for ax in fig.axes]
