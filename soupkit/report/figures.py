"""The report's figures, in page order, each drawn to inline SVG.

Adding a figure = one function in `trial_figures.py` or `model_figures.py` and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from soupkit.report import model_figures, trial_figures
from soupkit.report.render import style, to_svg
from soupkit.report.tables import StudyFrames


@dataclass(frozen=True)
class FigureSpec:
    key: str
    title: str
    caption: str
    draw: Callable[[StudyFrames], object]  # a matplotlib Figure, or why there is none (str)


@dataclass(frozen=True)
class DrawnFigure:
    key: str
    title: str
    caption: str
    svg: str | None  # None: not drawn, see `missing`
    missing: str | None = None


FIGURES = [
    FigureSpec("objective", "Objective per trial",
               "Each completed trial's objective, the best so far, and the base model. Failed, running, "
               "pruned (stopped at a milestone) and skipped trials are marked in the band at the bottom.",
               trial_figures.objective_history),
    FigureSpec("mixtures", "Mixture weights of every trial",
               "The data mixture each trial finetuned on, best objective at the top.", trial_figures.mixture_weights),
    FigureSpec("probes", "Per-probe scores: base, top trials, soups",
               f"Scores on every validation probe of the base model, the {model_figures.TOP_K} best trials and "
               "every soup; colour is the change against the base model.", model_figures.probe_scores),
    FigureSpec("soups", "Soups against their ingredients",
               "Each soup's objective (star) next to the trials merged into it; once `soupkit eval` ran on a "
               "soup, its verdict on the test halves beside: difference to the base per probe, points, 95% "
               "interval.", model_figures.soups_vs_ingredients),
    FigureSpec("pareto", "Pareto front: domain vs general",
               "Trials of a two-objective study, the Pareto front, the base model and the soups.",
               model_figures.pareto_front),
    FigureSpec("seconds", "Time per trial",
               "Wall time of each trial split into finetune, probes and the rest; failed trials hatched.",
               trial_figures.trial_seconds),
]


def draw_figures(frames: StudyFrames) -> list[DrawnFigure]:
    drawn = []
    for spec in FIGURES:
        with style():
            result = spec.draw(frames)
            if isinstance(result, str):
                drawn.append(DrawnFigure(spec.key, spec.title, spec.caption, None, result))
            else:
                drawn.append(DrawnFigure(spec.key, spec.title, spec.caption, to_svg(result, f"fig-{spec.key}")))
    return drawn
