"""`soupkit report`: read a study, draw the figures, write one HTML page, attach it to the study,
and say the gist in a few lines of text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from soupkit.atomic import atomic_write_text
from soupkit.report.dashboard import Attached, attach_report
from soupkit.report.figures import DrawnFigure, draw_figures
from soupkit.report.page import render_page
from soupkit.report.tables import StudyFrames, collect_study

STATE_WORDS = {"COMPLETE": "complete", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting",
               "PRUNED": "pruned", "SKIPPED": "skipped"}


@dataclass
class Report:
    html: Path
    summary: str
    figures: list[DrawnFigure]
    attached: Attached | None


def write_report(study, html: Path, run_dir: Path | None = None, source: str = "", storage=None,
                 verdict_dir: Path | None = None) -> Report:
    """Write the report of `study` (any storage, finished or still running) to `html`.

    With `verdict_dir` (the run folder), the verdicts `soupkit eval` left there for its soups
    (verdict.json) are shown beside the study's own, selection-side, numbers.

    With `run_dir`, the figures and the page are also attached to the study for optuna-dashboard
    (artifacts under `<run_dir>/artifacts`, a study note, a note per trial); that needs `storage`,
    the storage object the study was opened with.
    """
    if run_dir is not None and storage is None:
        raise ValueError("attaching a report to a study needs the storage object it was opened with")
    frames = collect_study(study)
    if verdict_dir is not None:
        from soupkit.soups.verdict import read_run_verdict

        frames.verdict = read_run_verdict(verdict_dir)
    figures = draw_figures(frames)
    summary = summary_text(frames)
    atomic_write_text(html, render_page(frames, figures, summary, source or f"'{study.study_name}'"))
    attached = attach_report(study, storage, frames, figures, summary, html, run_dir) if run_dir is not None else None
    return Report(html, summary, figures, attached)


def summary_text(frames: StudyFrames) -> str:
    """Trial counts, the best trial against the base model, the Pareto front, soups, failures, time."""
    counts = frames.counts()
    shown = [f"{n} {STATE_WORDS[state]}" for state, n in counts.items() if n or state in ("COMPLETE", "FAIL")]
    lines = [f"study '{frames.name}': {', '.join(shown)} trials"]

    base = frames.base_objective
    ranked = frames.ranked()
    if ranked.is_empty():
        lines.append("no completed trial yet" + (f"; base model objective {base:.4f}" if base is not None else ""))
    else:
        best = ranked.row(0, named=True)
        gain = f" vs base {base:.4f} ({best['objective'] - base:+.4f})" if base is not None else ""
        lines.append(f"best trial #{best['trial']}: objective {best['objective']:.4f}{gain}")
        mixture = {f: best.get(f"w:{f}") for f in frames.families if best.get(f"w:{f}")}
        ordered = sorted(mixture.items(), key=lambda x: -x[1])
        lines.append("  mixture " + ", ".join(f"{f} {w:.2f}" for f, w in ordered))
    if frames.two_objectives:
        base_values = frames.base_values or []
        base_text = f" (base {base_values[0]:.4f} / {base_values[1]:.4f})" if len(base_values) == 2 else ""
        lines.append(f"Pareto front (domain / general): {len(frames.front)} trials "
                     f"{', '.join(f'#{n}' for n in frames.front)}{base_text}")

    for soup in frames.soups.iter_rows(named=True):
        gain = f" ({soup['objective'] - base:+.4f} vs base)" if base is not None else ""
        weights = json.loads(soup.get("weights") or "{}")
        if weights:  # an adapt soup: shares of its bank's checkpoints
            members = "weights " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(weights.items(), key=lambda x: -x[1]))
        else:
            members = "trials " + ", ".join(map(str, soup["members"] or []))
        if soup.get("base_share"):
            members += f" + base model at {soup['base_share']:.2f}"
        role = f", {soup['role']}" if soup.get("role") else ""
        lines.append(f"soup {soup['soup']} ({soup['method']}{role}, {members}): "
                     f"objective {soup['objective']:.4f}{gain}")
        verdict = frames.soup_verdict(soup["soup"])
        if verdict:
            lines.append("  verdict, test halves (soupkit eval; points vs base, * beyond the noise): " + ", ".join(
                f"{r['probe']} {100 * r['difference']:+.1f}{'*' if r.get('beyond_noise') else ''}" for r in verdict))

    rows = [] if frames.trials.is_empty() else list(frames.trials.iter_rows(named=True))
    failed = [r for r in rows if r["state"] == "FAIL"]
    for r in failed[-3:]:
        lines.append(f"failed #{r['trial']}: {r['error'] or 'no reason recorded'}")
    if len(failed) > 3:
        lines.append(f"  ({len(failed) - 3} earlier failures in the trials table)")

    done = frames.completed()
    if not done.is_empty():
        finetune = done["finetune_s"].fill_null(0).sum()
        probe = done["probe_s"].fill_null(0).sum()
        lines.append(f"time in completed trials: finetune {finetune:.0f}s, probes {probe:.0f}s "
                     f"({(finetune + probe) / done.height:.0f}s per trial)")
    return "\n".join(lines)
