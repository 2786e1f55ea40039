"""Figures of the trials: objective with the best so far, mixture weights, time per trial.

Each function takes `StudyFrames` and returns a matplotlib Figure, or a sentence saying why
there is nothing to draw. Failed and running trials are drawn, marked, never dropped.
"""

from __future__ import annotations

from soupkit.report.render import BASE, BEST, FAIL, RUNNING, TRIAL, family_colours, new_figure
from soupkit.report.tables import StudyFrames, row_state

NOT_DONE = ("FAIL", "RUNNING", "WAITING", "PRUNED")
WORDS = {"FAIL": "failed", "RUNNING": "running", "WAITING": "waiting", "PRUNED": "pruned", "SKIPPED": "skipped"}


def _rows(frames: StudyFrames, state: str) -> list[dict]:
    """The rows of one state (soupkit.report.tables.row_state: PRUNED and SKIPPED apart)."""
    if frames.trials.is_empty():
        return []
    return [r for r in frames.trials.iter_rows(named=True) if row_state(r) == state]


def _worked(row: dict) -> bool:
    """Whether a trial's recorded seconds are work done: completed, or stopped by the pruner."""
    return row["state"] == "COMPLETE" or bool(row.get("pruned"))


def objective_history(frames: StudyFrames):
    if frames.trials.is_empty():
        return "no trials yet"
    fig = new_figure(8, 3.4)
    ax = fig.add_subplot()
    done = sorted(_rows(frames, "COMPLETE"), key=lambda r: r["trial"])
    if done:
        x = [r["trial"] for r in done]
        y = [r["objective"] for r in done]
        best = [max(y[: i + 1]) for i in range(len(y))]
        ax.plot(x, y, "o", color=TRIAL, label=f"completed trial ({len(done)})")
        ax.step(x, best, where="post", color=BEST, lw=2, label=f"best so far ({best[-1]:.4f})")
    if frames.base_objective is not None:
        ax.axhline(frames.base_objective, ls="--", color=BASE, lw=1, label=f"base model ({frames.base_objective:.4f})")
    # trials without an objective sit in a band below the lowest score, where they cannot be missed
    if frames.counts()["COMPLETE"] < frames.trials.height:
        low, high = ax.get_ylim()
        ax.set_ylim(low - 0.15 * (high - low), high)
    for state, marker, colour in (("FAIL", "x", FAIL), ("RUNNING", "^", RUNNING), ("WAITING", "^", RUNNING),
                                  ("PRUNED", "v", RUNNING), ("SKIPPED", "s", RUNNING)):
        rows = _rows(frames, state)
        if rows:
            ax.plot([r["trial"] for r in rows], [0.04] * len(rows), marker, color=colour, ms=8, mew=2,
                    transform=ax.get_xaxis_transform(), clip_on=False, label=f"{WORDS[state]} ({len(rows)})",
                    **({"mfc": "none"} if state != "FAIL" else {}))
    ax.set_xlabel("trial number")
    ax.set_ylabel("objective (weighted mean of probes)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def mixture_weights(frames: StudyFrames):
    if frames.trials.is_empty() or not frames.families:
        return "no trial has a mixture yet"
    rows = [r for r in frames.trials.iter_rows(named=True) if any(r.get(f"w:{f}") for f in frames.families)]
    done = sorted((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: (-r["objective"], r["trial"]))
    rest = sorted((r for r in rows if r["state"] != "COMPLETE"), key=lambda r: r["trial"])
    order = done + rest
    colours = family_colours(frames.families)
    fig = new_figure(8, 1.2 + 0.26 * len(order))
    ax = fig.add_subplot()
    ys = list(range(len(order)))[::-1]  # best at the top
    left = [0.0] * len(order)
    for fam in frames.families:
        widths = [r.get(f"w:{fam}") or 0.0 for r in order]
        bars = ax.barh(ys, widths, left=left, color=colours[fam], label=fam, height=0.8)
        for bar, r in zip(bars, order):
            if r["state"] != "COMPLETE":
                bar.set_alpha(0.45)
                bar.set_hatch("//")
        left = [a + b for a, b in zip(left, widths)]
    labels = [f"#{r['trial']}  {r['objective']:.4f}" if r["state"] == "COMPLETE" else f"#{r['trial']}  {r['state']}"
              for r in order]
    ax.set_yticks(ys, labels)
    for tick, r in zip(ax.get_yticklabels(), order):
        if r["state"] in NOT_DONE:
            tick.set_color(FAIL if r["state"] == "FAIL" else RUNNING)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel("mixture weight (trials sorted by objective; failed and unfinished trials hatched, last)")
    ax.grid(False)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncols=min(4, len(frames.families)), frameon=False)
    return fig


def trial_seconds(frames: StudyFrames):
    if frames.trials.is_empty():
        return "no trials yet"
    rows = sorted(frames.trials.iter_rows(named=True), key=lambda r: r["trial"])
    x = [r["trial"] for r in rows]
    finetune = [(r["finetune_s"] or 0.0) if _worked(r) else 0.0 for r in rows]
    # the probes at the end and at the milestones (a trial the pruner stopped has only the latter)
    probe = [(r["probe_s"] or 0.0) + (r["milestones_s"] or 0.0) if _worked(r) else 0.0 for r in rows]
    # the rest of a trial's wall time: resetting the model, saving the checkpoint
    other = [max(0.0, (r["wall_s"] or 0.0) - f - p) if _worked(r) else 0.0 for r, f, p in zip(rows, finetune, probe)]
    unfinished = [(r["wall_s"] or 0.0) if not _worked(r) else 0.0 for r in rows]
    fig = new_figure(8, 3.2)
    ax = fig.add_subplot()
    ax.bar(x, finetune, color=TRIAL, label="finetune")
    ax.bar(x, probe, bottom=finetune, color=BEST, label="probes")
    ax.bar(x, other, bottom=[a + b for a, b in zip(finetune, probe)], color="#bbbbbb", label="other (save, reset)")
    failed = [u if r["state"] == "FAIL" else 0.0 for u, r in zip(unfinished, rows)]
    running = [u if r["state"] in ("RUNNING", "WAITING") else 0.0 for u, r in zip(unfinished, rows)]
    if any(r["state"] == "FAIL" for r in rows):
        ax.bar(x, failed, color="none", edgecolor=FAIL, hatch="xx", label="failed (wall time)")
        # a trial that failed at once has no height: mark it on the axis as well
        fx = [r["trial"] for r in rows if r["state"] == "FAIL"]
        ax.plot(fx, [0.04] * len(fx), "x", color=FAIL, ms=8, mew=2, transform=ax.get_xaxis_transform(),
                clip_on=False)
    if any(r["state"] in ("RUNNING", "WAITING") for r in rows):
        ax.bar(x, running, color="none", edgecolor=RUNNING, hatch="..", label="running (so far)")
    ax.set_xlabel("trial number")
    ax.set_ylabel("seconds")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig
