"""Families from the user's own data: local jsonl/csv/parquet files, or hub datasets when online.

Columns `anchor`, `positive`[, `negative`] make a retrieval-style family; `text`, `label` make a
classification or clustering family. Loading goes through `datasets`, so anything it reads works.
"""

from __future__ import annotations

from pathlib import Path

from soupkit.config import LocalFamily
from soupkit.data.family import TaskFamily
from soupkit.data.registry import BuildOptions
from soupkit.data.split import split_labelled, split_retrieval
from soupkit.errors import SoupkitError

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _load_rows(spec: LocalFamily, base_dir: Path | None) -> tuple[list[dict], str]:
    import datasets

    datasets.disable_progress_bars()
    if spec.path is not None:
        path = Path(spec.path)
        if not path.is_absolute() and base_dir is not None and not path.exists():
            path = base_dir / path
        if not path.is_file():
            raise SoupkitError(f"family '{spec.name}': data file not found: {path}")
        builder = FORMATS.get(path.suffix.lower())
        if builder is None:
            raise SoupkitError(
                f"family '{spec.name}': {path}: unsupported file type '{path.suffix}' (use {', '.join(FORMATS)})"
            )
        try:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as exc:  # datasets raises many types for unreadable files
            raise SoupkitError(f"family '{spec.name}': cannot read {path}: {str(exc).splitlines()[0]}") from None
        return ds.to_list(), f"file {path}"
    try:
        ds = datasets.load_dataset(spec.hub, split=spec.split)
    except Exception as exc:
        raise SoupkitError(
            f"family '{spec.name}': cannot load hub dataset '{spec.hub}' (offline?): {str(exc).splitlines()[0]}"
        ) from None
    return ds.to_list(), f"hub dataset {spec.hub} ({spec.split})"


def _column(rows: list[dict], name: str) -> list[str]:
    return [str(r[name]).strip() if r.get(name) is not None else "" for r in rows]


def build_local_family(spec: LocalFamily, options: BuildOptions, base_dir: Path | None = None) -> TaskFamily:
    rows, source = _load_rows(spec, base_dir)
    if not rows:
        raise SoupkitError(f"family '{spec.name}': {source} has no rows")
    columns = set(rows[0])
    if {"anchor", "positive"} <= columns:
        pairs = list(zip(_column(rows, "anchor"), _column(rows, "positive")))
        negatives = None
        if "negative" in columns:
            negatives = {a: n for a, n in zip(_column(rows, "anchor"), _column(rows, "negative")) if n}
        train, probe = split_retrieval(
            pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train, negatives,
            probe_share=options.probe_share,
        )
        task = spec.task
    elif {"text", "label"} <= columns:
        kind = "clustering" if spec.task == "clustering" else "classification"
        items = list(zip(_column(rows, "text"), _column(rows, "label")))
        train, probe = split_labelled(items, options.seed, 2 * options.probe_size, options.max_train, kind)
        task = spec.task if spec.task in ("classification", "clustering") else "classification"
    else:
        raise SoupkitError(
            f"family '{spec.name}': {source} needs columns anchor,positive[,negative] or text,label; "
            f"found {', '.join(sorted(columns))}"
        )
    if not train:
        raise SoupkitError(f"family '{spec.name}': {source} leaves no training examples after the probe split")
    return TaskFamily(spec.name, task, source, train, probe, f"user family from {source}")
