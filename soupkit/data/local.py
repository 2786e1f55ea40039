"""Families from the user's own data: local jsonl/csv/parquet files, or hub datasets when online.

Columns `anchor`, `positive`[, `negative`] make a retrieval-style family; `text`, `label` make a
classification or clustering family. Local files are read strictly, row by row: a line that is not
UTF-8, not JSON, or holds a value of the wrong kind (a null or numeric anchor, a list as positive)
is one error naming the file and the line, never a row dropped in silence.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from soupkit.config import LocalFamily
from soupkit.data.family import TaskFamily
from soupkit.data.registry import BuildOptions
from soupkit.data.split import split_labelled, split_retrieval
from soupkit.errors import SoupkitError

FORMATS = (".jsonl", ".json", ".csv", ".parquet")
TEXT_COLUMNS = ("anchor", "positive", "negative", "text")
TOO_DEEP = "JSON nested too deeply (a row holds named columns of text, not nested structures)"


class Rows:
    """Rows of a data source and where each came from ("line 3", "row 3"), for messages."""

    def __init__(self, source: str, rows: list[dict], places: list[str]):
        self.source, self.rows, self.places = source, rows, places


def _fail(spec: LocalFamily, where: str, problem: str) -> SoupkitError:
    return SoupkitError(f"family '{spec.name}': {where}: {problem}")


def _decode(spec: LocalFamily, path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(spec, f"{path}: line {line}",
                    f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); save the file as UTF-8") from None


def _read_json_lines(spec: LocalFamily, path: Path, text: str) -> Rows:
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):  # one JSON array of objects
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(spec, f"{path}: line {exc.lineno}", f"not valid JSON ({exc.msg}, column {exc.colno})") from None
        except RecursionError:
            raise _fail(spec, str(path), TOO_DEEP) from None
        places = [f"item {i + 1}" for i in range(len(items))]
    else:
        items, places = [], []
        # JSON Lines ends lines at '\n' only: str.splitlines() would also split at U+2028, U+0085 and
        # other characters JSON allows raw inside a string
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        last = max((i for i, line in enumerate(lines, start=1) if line.strip()), default=0)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                cut = " (the last line is cut short: an interrupted copy or write?)" if number == last else ""
                raise _fail(spec, f"{path}: line {number}",
                            f"not valid JSON ({exc.msg}, column {exc.colno}){cut}") from None
            except RecursionError:
                raise _fail(spec, f"{path}: line {number}", TOO_DEEP) from None
            places.append(f"line {number}")
    for item, place in zip(items, places):
        if not isinstance(item, dict):
            raise _fail(spec, f"{path}: {place}", f"a row must be a JSON object with named columns, got {_kind(item)}")
    return Rows(f"file {path}", items, places)


def _read_csv(spec: LocalFamily, path: Path, text: str) -> Rows:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows, places = [], []
    try:
        for row in reader:
            place = f"line {reader.line_num}"
            if None in row or any(value is None for value in row.values()):
                fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                raise _fail(spec, f"{path}: {place}", f"has {fields} fields, the header {len(reader.fieldnames or [])}")
            rows.append(row)
            places.append(place)
    except csv.Error as exc:
        raise _fail(spec, f"{path}: line {reader.line_num}", f"not valid CSV ({exc})") from None
    return Rows(f"file {path}", rows, places)


def _read_parquet(spec: LocalFamily, path: Path) -> Rows:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise _fail(spec, str(path), f"not a readable parquet file ({str(exc).splitlines()[0]})") from None
    return Rows(f"file {path}", rows, [f"row {i + 1}" for i in range(len(rows))])


def _read_file(spec: LocalFamily, base_dir: Path | None) -> Rows:
    path = Path(spec.path)
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    if path.is_dir():
        raise _fail(spec, str(path), "is a folder, not a data file (give the jsonl, csv or parquet file inside it)")
    if path.exists() and not path.is_file():
        raise _fail(spec, str(path), "is not a regular file (a pipe, socket or device); give a jsonl, csv or "
                    "parquet file")
    if not path.is_file():
        dangling = " (a symbolic link to a missing file)" if path.is_symlink() else ""
        raise SoupkitError(f"family '{spec.name}': data file not found: {path}{dangling}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise _fail(spec, str(path), f"unsupported file type '{path.suffix}' (use {', '.join(FORMATS)})")
    if suffix == ".parquet":
        return _read_parquet(spec, path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(spec, str(path), f"cannot read it ({exc.strerror})") from None
    text = _decode(spec, path, data)
    return _read_csv(spec, path, text) if suffix == ".csv" else _read_json_lines(spec, path, text)


def _load_rows(spec: LocalFamily, base_dir: Path | None) -> Rows:
    if spec.path is not None:
        return _read_file(spec, base_dir)
    import datasets

    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(spec.hub, split=spec.split)
    except Exception as exc:
        raise SoupkitError(
            f"family '{spec.name}': cannot load hub dataset '{spec.hub}' (offline?): {str(exc).splitlines()[0]}"
        ) from None
    rows = ds.to_list()
    return Rows(f"hub dataset {spec.hub} ({spec.split})", rows, [f"row {i + 1}" for i in range(len(rows))])


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"true/false ({value})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _texts(spec: LocalFamily, data: Rows, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[tuple]:
    """The named columns of every row, checked: text columns hold non-empty text, a label is text
    or a whole number; an optional column may be missing, null or empty."""
    out = []
    for row, place in zip(data.rows, data.places):
        values = []
        for name in columns:
            value = row.get(name)
            if name in optional and (value is None or value == ""):
                values.append(None)
                continue
            if name == "label" and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if name not in row:
                raise _fail(spec, f"{data.source.removeprefix('file ')}: {place}", f"has no '{name}' column")
            if not isinstance(value, str):
                raise _fail(spec, f"{data.source.removeprefix('file ')}: {place}",
                            f"'{name}' must be text, got {_kind(value)}")
            if not value.strip():
                raise _fail(spec, f"{data.source.removeprefix('file ')}: {place}", f"'{name}' is empty")
            values.append(value.strip())
        out.append(tuple(values))
    return out


def build_local_family(spec: LocalFamily, options: BuildOptions, base_dir: Path | None = None) -> TaskFamily:
    data = _load_rows(spec, base_dir)
    source = data.source
    if not data.rows:
        raise SoupkitError(f"family '{spec.name}': {source} has no rows")
    columns = set(data.rows[0])
    if {"anchor", "positive"} <= columns:
        has_negative = "negative" in columns
        names = ("anchor", "positive", "negative") if has_negative else ("anchor", "positive")
        rows = _texts(spec, data, names, optional=("negative",))
        pairs = [(r[0], r[1]) for r in rows]
        negatives = {r[0]: r[2] for r in rows if has_negative and r[2]} if has_negative else None
        train, probe = split_retrieval(
            pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train, negatives,
            probe_share=options.probe_share,
        )
        task = spec.task
    elif {"text", "label"} <= columns:
        kind = "clustering" if spec.task == "clustering" else "classification"
        items = _texts(spec, data, ("text", "label"))
        train, probe = split_labelled(items, options.seed, 2 * options.probe_size, options.max_train, kind)
        task = spec.task if spec.task in ("classification", "clustering") else "classification"
    else:
        raise SoupkitError(
            f"family '{spec.name}': {source} needs columns anchor,positive[,negative] or text,label; "
            f"found {', '.join(sorted(columns)) or 'none'}"
        )
    if not train:
        raise SoupkitError(f"family '{spec.name}': {source} leaves no training examples after the probe split")
    return TaskFamily(spec.name, task, source, train, probe, f"user family from {source}")
