"""Figures of the models: per-probe scores (base, top trials, soups), soups against their
ingredients, and the Pareto front of a two-objective study.

Each function takes `StudyFrames` and returns a matplotlib Figure, or a sentence saying why
there is nothing to draw.
"""

from __future__ import annotations

import math

from soupkit.report.render import BASE, FRONT, SOUP, TRIAL, new_figure
from soupkit.report.tables import StudyFrames, probe_scores_frame

TOP_K = 5


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def probe_scores(frames: StudyFrames, top_k: int = TOP_K):
    from matplotlib import colormaps

    table = probe_scores_frame(frames, top_k)
    if not frames.probes:
        return "no probe scores yet"
    columns = ["objective", *frames.probes]
    names = table["model"].to_list()
    values = [[row[c] for c in columns] for row in table.iter_rows(named=True)]
    base = {"objective": frames.base_objective, **frames.base_scores}
    # colour is the change against the base model, so a gain reads at a glance in every column
    delta = [[v - base[c] if _finite(v) and _finite(base.get(c)) else math.nan for v, c in zip(row, columns)]
             for row in values]
    span = max([abs(d) for row in delta for d in row if _finite(d)] + [1e-6])
    fig = new_figure(2.2 + 1.05 * len(columns), 1.3 + 0.42 * len(names))
    ax = fig.add_subplot()
    cmap = colormaps["RdBu"].with_extremes(bad="#eeeeee")
    image = ax.imshow(delta, cmap=cmap, vmin=-span, vmax=span, aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            dark = _finite(delta[i][j]) and abs(delta[i][j]) > 0.6 * span
            ax.text(j, i, f"{v:.3f}" if _finite(v) else "–", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.axvline(0.5, color="white", lw=3)
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="change vs base model", shrink=0.8)
    return fig


def soups_vs_ingredients(frames: StudyFrames):
    if frames.soups.is_empty():
        return "no soups yet: run `soupkit soup --out RUN_DIR` to make one"
    # soups_frame holds members as text ("3"; an adapt soup's bank labels): trials are looked up so
    objective = {} if frames.trials.is_empty() else {
        str(r["trial"]): r["objective"] for r in frames.trials.iter_rows(named=True) if r["state"] == "COMPLETE"
    }
    soups = list(frames.soups.iter_rows(named=True))
    tested = [s for s in soups if frames.soup_verdict(s["soup"])]
    width = max(4.5, 1.6 + 1.4 * len(soups))
    fig = new_figure(width + (4.5 if tested else 0), 3.6)
    ax = fig.add_subplot(1, 2 if tested else 1, 1)
    for i, soup in enumerate(soups):
        members = [(m, objective[m]) for m in soup["members"] or [] if _finite(objective.get(m))]
        # ingredients on the left, the soup on the right, a line from each ingredient into the soup
        if _finite(soup["objective"]):
            for _, v in members:
                ax.plot([i - 0.2, i + 0.2], [v, soup["objective"]], color=SOUP, lw=0.8, alpha=0.6)
            ax.plot([i + 0.2], [soup["objective"]], "*", color=SOUP, ms=16, mec="black", mew=0.5,
                    label="soup" if i == 0 else None, zorder=3)
        ax.plot([i - 0.2] * len(members), [v for _, v in members], "o", color=TRIAL, zorder=3,
                label="ingredient trial" if i == 0 else None)
        same_value: dict[float, list[str]] = {}  # ingredients that score alike share one label
        for m, v in members:
            same_value.setdefault(v, []).append(m)
        for v, ms in same_value.items():
            ax.annotate(", ".join(f"#{m}" for m in ms), (i - 0.2, v), xytext=(-6, 0), textcoords="offset points",
                        ha="right", va="center", fontsize=7)
    if frames.base_objective is not None:
        ax.axhline(frames.base_objective, ls="--", color=BASE, lw=1, label="base model")
    ax.set_xticks(range(len(soups)), [f"{s['soup']}\n({s['method']})" for s in soups])
    ax.set_xlim(-0.6, len(soups) - 0.4)
    ax.set_ylabel("objective (selection halves)")
    if tested:
        _verdict_panel(fig.add_subplot(1, 2, 2), frames, [s["soup"] for s in tested])
        ax.legend(loc="lower left", fontsize=7, frameon=False)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def _verdict_panel(ax, frames: StudyFrames, soups: list[str]) -> None:
    """Each soup's verdict on the test halves (`soupkit eval`): its difference to the base per
    probe, in points, with the 95% paired-bootstrap interval where the probe has one."""
    from matplotlib import colormaps

    probes = list(dict.fromkeys(r["probe"] for s in soups for r in frames.soup_verdict(s)))
    colours = colormaps["tab10"]
    step = 0.6 / max(len(soups), 1)
    for j, soup in enumerate(soups):
        records = {r["probe"]: r for r in frames.soup_verdict(soup)}
        shown = [(i, records[p]) for i, p in enumerate(probes) if p in records]
        x = [i - 0.3 + step * (j + 0.5) for i, _ in shown]
        y = [100 * r["difference"] for _, r in shown]
        below = [100 * (r["difference"] - r["low"]) if r.get("low") is not None else 0.0 for _, r in shown]
        above = [100 * (r["high"] - r["difference"]) if r.get("high") is not None else 0.0 for _, r in shown]
        ax.errorbar(x, y, yerr=[below, above], fmt="*", ms=9, color=colours(j % 10), capsize=2, lw=1, label=soup)
    ax.axhline(0, ls="--", color=BASE, lw=1)
    ax.set_xticks(range(len(probes)), probes, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("test half: points vs base (95% interval)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=7)


def pareto_front(frames: StudyFrames):
    if not frames.two_objectives:
        return "the study has one objective; the Pareto front is drawn for `objective.mode: pareto` recipes"
    done = [] if frames.trials.is_empty() else [
        r for r in frames.trials.iter_rows(named=True) if r["state"] == "COMPLETE" and _finite(r["domain"])
    ]
    if not done:
        return "no completed trial yet"
    fig = new_figure(6.5, 4.8)
    ax = fig.add_subplot()
    ax.plot([r["domain"] for r in done], [r["general"] for r in done], "o", color=TRIAL, alpha=0.7, label="trial")
    front = sorted((r for r in done if r["trial"] in frames.front), key=lambda r: r["domain"])
    ax.step([r["domain"] for r in front], [r["general"] for r in front], "-o", where="post", color=FRONT,
            lw=1.5, label=f"Pareto front ({len(front)})")
    for r in front:
        ax.annotate(f"#{r['trial']}", (r["domain"], r["general"]), xytext=(5, 4), textcoords="offset points",
                    fontsize=7)
    if frames.base_values and all(_finite(v) for v in frames.base_values):
        ax.plot(*frames.base_values, "X", color=BASE, ms=10, label="base model")
    soups = [s for s in frames.soups.iter_rows(named=True) if _finite(s.get("domain"))]
    for i, s in enumerate(soups):
        ax.plot(s["domain"], s["general"], "*", color=SOUP, ms=15, mec="black", mew=0.5,
                label="soup" if i == 0 else None)
        ax.annotate(s["soup"], (s["domain"], s["general"]), xytext=(6, -8), textcoords="offset points", fontsize=7)
    failed = frames.counts()["FAIL"]
    ax.set_xlabel("domain (weighted mean of the domain probes)")
    ax.set_ylabel("general (weighted mean of the other probes)")
    if failed:
        ax.set_title(f"{failed} failed trial(s) have no values and are not placed", fontsize=8, color="#666666")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig
