"""What a merged folder says about itself: soupkit_merge.yaml (replayable) and a model card."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MERGE_RECORD = "soupkit_merge.yaml"


@dataclass(frozen=True)
class MergeRecord:
    method: str
    inputs: list[str]
    weights: list[float] | None
    normalised_weights: list[float] | None
    base: str | None
    parameters: dict[str, Any]
    command: str
    left_out: list[str]
    base_index: int | None = None  # the base's position among the inputs, if it is one

    def to_dict(self) -> dict[str, Any]:
        from soupkit import __version__

        record: dict[str, Any] = {
            "method": self.method,
            "inputs": self.inputs,
            "weights": self.weights,
            "normalised_weights": self.normalised_weights,
            "base": self.base,
            "parameters": self.parameters,
            "command": self.command,
            "soupkit_version": __version__,
        }
        if self.left_out:
            record["left_out"] = self.left_out
        return record


def merge_command(inputs: list[str], out: str, method: str, weights: list[float] | None,
                  base: str | None, parameters: dict[str, Any]) -> str:
    """The `soupkit merge` command line that reproduces a merge."""
    words = ["soupkit", "merge", *inputs, "--out", out, "--method", method]
    if weights is not None:
        words += ["--weights", ",".join(f"{w:g}" for w in weights)]
    if base is not None:
        words += ["--base", base]
    for key, value in parameters.items():
        words += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return shlex.join(words)


def write_merge_record(folder: Path, record: MergeRecord) -> None:
    import yaml

    text = yaml.safe_dump(record.to_dict(), sort_keys=False, allow_unicode=True, width=10**6)
    (folder / MERGE_RECORD).write_text(text)


def write_model_card(folder: Path, record: MergeRecord, name: str) -> None:
    """A README.md that sentence-transformers and the Hub read; `name` is the final folder name."""
    config = _read_json(folder / "config_sentence_transformers.json")
    modules = _read_json(folder / "modules.json") or []
    rows = [f"| `{path}` | {cell} |" for path, cell in zip(record.inputs, _weight_cells(record))]
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags:",
        "- sentence-transformers",
        "- merge",
        "- soupkit",
        "---",
        "",
        f"# Merged embedding model ({record.method})",
        "",
        f"Made by soupkit with the `{record.method}` method from {len(record.inputs)} model folders.",
        "",
        "| input | weight |",
        "|---|---|",
        *rows,
        "",
    ]
    if record.base:
        lines += [f"Base model (task vectors are taken relative to it): `{record.base}`", ""]
    if record.parameters:
        lines += ["Parameters: " + ", ".join(f"`{k}={v}`" for k, v in record.parameters.items()), ""]
    lines += ["Modules: " + " -> ".join(m.get("type", "?").rsplit(".", 1)[-1] for m in modules), ""]
    prompts = (config or {}).get("prompts") or {}
    if prompts:
        lines += ["Prompts (kept from the first input):", ""]
        lines += [f"- `{name}`: `{text!r}`" for name, text in prompts.items()] + [""]
    lines += [
        "## Usage",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{name}")',
        'embeddings = model.encode(["first text", "second text"])',
        "```",
        "",
        "## Reproduce",
        "",
        "```bash",
        record.command,
        "```",
        "",
        f"The full record is in `{MERGE_RECORD}`.",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))


def _weight_cells(record: MergeRecord) -> list[str]:
    """One cell per input; weights cover the non-base inputs only."""
    shares = record.normalised_weights or record.weights
    cells, position = [], 0
    for index in range(len(record.inputs)):
        if index == record.base_index:
            cells.append("base")
            continue
        cells.append("" if shares is None else f"{shares[position]:.4g}")
        position += 1
    return cells


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None
