"""Tables of a study (polars): every trial, the soups, the top trials with their scores and mixtures.

`collect_study` reads a study once into `StudyFrames`, which the figures, the HTML report, the
text summary and the dashboard notes all draw from. It works on any storage and on a running
study: trials that failed, run or wait are rows with their state, not dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from soupkit.study_record import StudyRecord, TrialRecord, metric_names, two_objectives


def trials_frame(study, all_states: bool = False):
    """One row per trial: number, state, objective (and domain/general for a two-objective study),
    per-probe scores `score:*`, mixture weights `w:*`, seconds, wall time, error, and for a trial
    the pruner stopped, where (`pruned`; its objective is the milestone's). Completed trials only
    unless `all_states`."""
    import polars as pl

    rows = []
    now = datetime.now()
    for t in study.get_trials(deepcopy=False):
        if t.state.name != "COMPLETE" and not all_states:
            continue
        record = TrialRecord.of(t)
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name, "objective": record.objective}
        if two_objectives(study):
            row["domain"], row["general"] = record.values if record.values else (None, None)
        row.update({f"score:{k}": v for k, v in record.scores.items()})
        row.update({f"w:{k}": v for k, v in record.mixture.items()})
        row["finetune_s"], row["probe_s"] = record.seconds.get("finetune"), record.seconds.get("probe")
        row["milestones_s"] = record.seconds.get("milestones")
        end = t.datetime_complete or (now if t.state.name == "RUNNING" else None)
        row["wall_s"] = (end - t.datetime_start).total_seconds() if end and t.datetime_start else None
        row["error"] = record.error
        if record.skipped:  # a trial the search pruned instead of running (a duplicate mixture)
            row["skipped"] = record.skipped
        pruned = record.pruned()
        if pruned:  # a trial the pruner stopped at a milestone
            row["pruned"] = pruned
        row["retry_of"] = record.retry_of
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def row_state(row: dict) -> str:
    """A trials_frame row's state, PRUNED split in two: PRUNED for a trial the pruner stopped at a
    milestone, SKIPPED for one that gave way before it trained (a duplicate, a full budget)."""
    return "SKIPPED" if row["state"] == "PRUNED" and not row.get("pruned") else row["state"]


def soups_frame(study):
    """One row per recorded soup: name, method, members, base share, objective, domain/general, `score:*`."""
    import polars as pl

    rows, two = [], two_objectives(study)
    for name, soup in StudyRecord.of(study).soups.items():
        row: dict[str, Any] = {"soup": name, "method": soup.method, "members": [str(m) for m in soup.members],
                               "weights": json.dumps(soup.weights), "role": soup.role,
                               "base_share": soup.base_share, "objective": soup.objective, "path": soup.path}
        if two and soup.values:
            row["domain"], row["general"] = soup.values
        row.update({f"score:{k}": v for k, v in soup.scores.items()})
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


@dataclass
class StudyFrames:
    """Everything a report shows, read from the study once."""

    name: str
    objectives: list[str]  # ["objective"], or ["domain", "general"] for a pareto study
    trials: Any  # polars DataFrame: every trial, all states (trials_frame(all_states=True))
    soups: Any  # polars DataFrame (soups_frame)
    families: list[str]
    probes: list[str]
    base_scores: dict[str, float]
    base_objective: float | None
    base_values: list[float] | None
    front: list[int]  # trial numbers on the Pareto front (two objectives only)
    verdict: list[dict] = field(default_factory=list)  # `soupkit eval` records of the run's soups (verdict.json)

    def soup_verdict(self, soup: str, split: str = "test") -> list[dict]:
        """The verdict records of the soup named `soup` (its folder soups/<soup>) on `split`."""
        return [r for r in self.verdict if Path(str(r["path"])).name == soup and r["split"] == split]

    @property
    def two_objectives(self) -> bool:
        return len(self.objectives) == 2

    def completed(self):
        import polars as pl

        if self.trials.is_empty():
            return self.trials
        return self.trials.filter(pl.col("state") == "COMPLETE")

    def ranked(self):
        """Completed trials, best scalar objective first."""
        done = self.completed()
        return done if done.is_empty() else done.sort(["objective", "trial"], descending=[True, False])

    def counts(self) -> dict[str, int]:
        """Trials by state; of the PRUNED ones, those the pruner stopped (PRUNED) apart from those
        that gave way before they trained (SKIPPED)."""
        rows = [] if self.trials.is_empty() else self.trials.iter_rows(named=True)
        states = [row_state(r) for r in rows]
        return {s: states.count(s) for s in ("COMPLETE", "FAIL", "RUNNING", "WAITING", "PRUNED", "SKIPPED")}


def collect_study(study) -> StudyFrames:
    trials = trials_frame(study, all_states=True)
    soups = soups_frame(study)
    columns = list(trials.columns) + list(soups.columns)
    record = StudyRecord.of(study)
    base_scores = record.base_scores
    probes = list(base_scores) + [c.removeprefix("score:") for c in columns if c.startswith("score:")]
    families = [c.removeprefix("w:") for c in trials.columns if c.startswith("w:")]
    two = two_objectives(study)
    front = sorted(t.number for t in study.best_trials) if two else []
    return StudyFrames(
        name=study.study_name,
        objectives=metric_names(two),
        trials=trials,
        soups=soups,
        families=families,
        probes=list(dict.fromkeys(probes)),
        base_scores=base_scores,
        base_objective=record.base_objective,
        base_values=record.base_values,
        front=front,
    )


def probe_scores_frame(frames: StudyFrames, top_k: int = 5):
    """Rows: the base model, the `top_k` best trials and every soup; columns: `model`, `objective`
    and one per probe."""
    import polars as pl

    rows = [{"model": "base", "objective": frames.base_objective, **frames.base_scores}]
    for t in frames.ranked().head(top_k).iter_rows(named=True):
        rows.append({"model": f"trial {t['trial']}", "objective": t["objective"],
                     **{p: t.get(f"score:{p}") for p in frames.probes}})
    for s in frames.soups.iter_rows(named=True):
        rows.append({"model": f"soup {s['soup']}", "objective": s["objective"],
                     **{p: s.get(f"score:{p}") for p in frames.probes}})
    schema = {"model": pl.Utf8, "objective": pl.Float64, **{p: pl.Float64 for p in frames.probes}}
    return pl.DataFrame(rows, schema=schema)


def top_trials_table(study, k: int = 5) -> str:
    """Text table of the best `k` trials next to the base model, for the end of a search."""
    import polars as pl

    frame = trials_frame(study)
    if frame.is_empty():
        return "no completed trials"
    top = frame.sort("objective", descending=True).head(k)
    record = StudyRecord.of(study)
    base = record.base_scores
    score_cols = [c for c in top.columns if c.startswith("score:")]
    base_row = {"trial": None, "objective": record.base_objective}
    base_row.update({c: base.get(c.removeprefix("score:")) for c in score_cols})
    table = pl.concat([top.select(["trial", "objective", *score_cols]), pl.DataFrame([base_row])], how="diagonal")
    table = table.with_columns(pl.col("trial").cast(pl.Utf8).fill_null("base"))
    table = table.rename({c: c.removeprefix("score:") for c in score_cols})
    mixtures = top.select(["trial", *[c for c in top.columns if c.startswith("w:")]])
    mixtures = mixtures.rename({c: c.removeprefix("w:") for c in mixtures.columns if c.startswith("w:")})
    with terminal_table(k + 2, types=True, strings=None):
        return f"top trials (probe scores):\n{table}\nmixtures of the top trials:\n{mixtures}"


def terminal_table(rows: int, width: int = 200, types: bool = False, strings: int | None = 80):
    """How every table soupkit prints is laid out (a polars Config, used as `with`): all columns,
    `rows` rows, 3 decimals, no shape line; `types` shows the column types, `strings` the longest
    text shown (None: polars' own)."""
    import polars as pl

    return pl.Config(tbl_rows=rows, tbl_cols=-1, float_precision=3, tbl_width_chars=width,
                     tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=not types,
                     **({"fmt_str_lengths": strings} if strings else {}))
