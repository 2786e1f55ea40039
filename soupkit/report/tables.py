"""Tables of a study (polars): the top trials with their scores and mixtures."""

from __future__ import annotations


def trials_frame(study):
    """One row per completed trial: number, objective, per-probe scores, mixture weights, seconds."""
    import polars as pl

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name != "COMPLETE":
            continue
        row = {"trial": t.number, "objective": t.user_attrs.get("objective", t.values[0] if t.values else None)}
        if t.values and len(t.values) == 2:
            row["domain"], row["general"] = t.values
        row.update({f"score:{k}": v for k, v in (t.user_attrs.get("scores") or {}).items()})
        row.update({f"w:{k}": v for k, v in (t.user_attrs.get("mixture") or {}).items()})
        secs = t.user_attrs.get("seconds") or {}
        row["finetune_s"], row["probe_s"] = secs.get("finetune"), secs.get("probe")
        rows.append(row)
    return pl.DataFrame(rows)


def top_trials_table(study, k: int = 5) -> str:
    """Text table of the best `k` trials next to the base model, for the end of a search."""
    import polars as pl

    frame = trials_frame(study)
    if frame.is_empty():
        return "no completed trials"
    top = frame.sort("objective", descending=True).head(k)
    base = study.user_attrs.get("base_scores") or {}
    score_cols = [c for c in top.columns if c.startswith("score:")]
    base_row = {"trial": None, "objective": study.user_attrs.get("base_objective")}
    base_row.update({c: base.get(c.removeprefix("score:")) for c in score_cols})
    table = pl.concat([top.select(["trial", "objective", *score_cols]), pl.DataFrame([base_row])], how="diagonal")
    table = table.with_columns(pl.col("trial").cast(pl.Utf8).fill_null("base"))
    table = table.rename({c: c.removeprefix("score:") for c in score_cols})
    mixtures = top.select(["trial", *[c for c in top.columns if c.startswith("w:")]])
    mixtures = mixtures.rename({c: c.removeprefix("w:") for c in mixtures.columns if c.startswith("w:")})
    with pl.Config(tbl_rows=k + 2, tbl_cols=-1, float_precision=3, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        return f"top trials (probe scores):\n{table}\nmixtures of the top trials:\n{mixtures}"
