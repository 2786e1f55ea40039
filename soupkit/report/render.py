"""Matplotlib figures rendered to SVG text that can be inlined in a page: no files, no network.

Figures are built with `matplotlib.figure.Figure` (no pyplot, no global state); text stays text
(`svg.fonttype: none`), so the page is small and searchable. Each SVG's ids get a prefix so that
several figures can share one HTML document.
"""

from __future__ import annotations

import io
import re

TRIAL = "#1f77b4"
BEST = "#ff7f0e"
BASE = "#222222"
FAIL = "#d62728"
RUNNING = "#8c8c8c"
SOUP = "#2ca02c"
FRONT = "#9467bd"

_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "soupkit",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def style():
    """The report's matplotlib settings; draw and render figures inside this context."""
    import matplotlib

    return matplotlib.rc_context(_STYLE)


def new_figure(width: float, height: float):
    """A figure of `width` x `height` inches with constrained layout (call inside `style()`)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def family_colours(families: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(families) <= 10 else "tab20"]
    return {f: cmap(i % cmap.N) for i, f in enumerate(families)}


def to_svg(fig, prefix: str) -> str:
    """The figure as an `<svg>` element (no XML prolog), its ids prefixed with `prefix`."""
    buf = io.StringIO()
    with style():
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # ids are unique within one SVG only: make them unique within the page
    return re.sub(r'(\bid="|href="#|url\(#)', lambda m: m.group(1) + prefix + "-", text)
