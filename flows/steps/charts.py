"""Interactive charts of a sweep as self-contained HTML files (plotly, with plotly.js inline): they open
from MLflow's artifact view or the sweep's output folder with no server and no internet.

`parallel_coordinates_html` draws one line per finished trial across one axis per mixture weight and a
last axis for the objective, coloured by the objective (best brightest). Dragging along an axis keeps
the lines in that range: e.g. select the best objectives and read off which weights they share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from flows.trials.result import TrialResult
from mixture_search.files import atomic_write


def parallel_coordinates_html(
    results: Sequence[TrialResult],
    domains: Sequence[str],
    path: Path,
    *,
    objective: str,
    maximize: bool = False,
    title: str = "",
) -> Path | None:
    """The parallel-coordinates chart of the finished trials in `results` (weights `w.<domain>` ->
    `objective`) written to `path`; None when no trial has an objective to draw."""
    done = [r for r in results if r.ok and r.objective is not None]
    if not done:
        return None
    values = [float(r.objective) for r in done]  # type: ignore[arg-type]
    dimensions = [
        {"label": f"w.{d}", "values": [r.mixture.share(d) if d in r.mixture else 0.0 for r in done], "range": [0, 1]}
        for d in domains
    ]
    dimensions.append({"label": objective, "values": values})
    figure = go.Figure(
        go.Parcoords(
            # the colour scale runs from worst to best: bright is good in either direction
            line={
                "color": values,
                "colorscale": "Viridis",
                "reversescale": not maximize,
                "showscale": True,
                "colorbar": {"title": {"text": objective}},
            },
            dimensions=dimensions,
        )
    )
    direction = "higher" if maximize else "lower"
    figure.update_layout(
        title={
            "text": f"{title or 'sweep'}: {len(done)} trials, {objective} ({direction} is better); "
            "drag along an axis to filter"
        },
        margin={"l": 60, "r": 60, "t": 90, "b": 40},
    )
    html = figure.to_html(include_plotlyjs=True, full_html=True)
    atomic_write(path, html)
    return path
