"""The verdict (`soupkit eval`): is a model better than the base on a recipe's probes, beyond the noise?

Every model and the base are scored on the same half of every probe of the recipe (trained
families, the general ones among them, and held-out families): the `test` half, which no search,
soup or adapt ever scored (soupkit.data.halves), or the `selection` half they chose on. Where a
probe scores items (a query's nDCG@10, a text's label hit) the model's difference to the base gets
a 95% paired-bootstrap interval over those items (soupkit.soups.compare); a difference whose
interval excludes zero is marked beyond the noise. Clustering and similarity probes score a set:
they get the difference alone.

A verdict is a table for people and records for scripts: one per (model, probe), as JSON and CSV.
A model that is a run's soup (`<run>/soups/<name>`) also lands in `<run>/verdict.json`, which
`soupkit report` shows beside the study's own (selection-side) numbers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from soupkit.atomic import atomic_write_text, check_can_write
from soupkit.config import Recipe
from soupkit.errors import SoupkitError

__all__ = ["VERDICT_FILE", "Verdict", "VerdictRecord", "check_outputs", "evaluate_models", "probe_roles",
           "read_run_verdict", "run_folder_of", "write_verdict"]

VERDICT_FILE = "verdict.json"  # in a run folder: the verdicts of its soups (merged over evals)
BASE_LABEL = "base"


@dataclass(frozen=True)
class VerdictRecord:
    """One model on one probe, against the base model on the same items."""

    model: str  # as given on the command line
    path: str  # what was loaded: a folder, a hub id
    probe: str
    role: str  # "domain", "general", "trained" (a weighted recipe's families) or "held-out"
    split: str  # "test" or "selection"
    metric: str
    items: int | None  # the items the interval resamples; None for a probe that scores a set
    score: float
    base_score: float
    difference: float  # score - base_score, in the metric's units (0-1)
    low: float | None  # 95% paired-bootstrap interval of the difference, None for a set-scored probe
    high: float | None
    beyond_noise: bool | None  # the interval excludes zero; None without an interval
    base: str  # the base model it was compared with

    def cell(self) -> str:
        """The model's score, its difference in points, the interval, * beyond the noise."""
        return f"{self.score:.3f} {self.difference_cell()}"

    def difference_cell(self) -> str:
        """The difference from the base in points, the interval, * beyond the noise (tables in points)."""
        interval = f" [{100 * self.low:+.1f}, {100 * self.high:+.1f}]" if self.low is not None else ""
        return f"{100 * self.difference:+.1f}{interval}{' *' if self.beyond_noise else ''}"


@dataclass
class Verdict:
    recipe: str
    split: str
    base: str
    models: list[str]
    records: list[VerdictRecord]
    skipped: dict[str, str]  # probe -> why it has no row (an empty half)
    notes: list[str] = field(default_factory=list)  # what a reader must know to quote it (older studies)

    def table(self) -> str:
        """One row per probe: its role and size, the base's score, each model's score and difference."""
        import polars as pl

        by = {(r.model, r.probe): r for r in self.records}
        probes = list(dict.fromkeys(r.probe for r in self.records))
        rows = []
        for probe in probes:
            first = next(r for r in self.records if r.probe == probe)
            size = f"{first.items} items" if first.items is not None else "set"
            rows.append({"probe": probe, "role": first.role, "metric": f"{first.metric} ({size})",
                         BASE_LABEL: f"{first.base_score:.3f}",
                         **{m: by[(m, probe)].cell() if (m, probe) in by else "" for m in self.models}})
        with pl.Config(tbl_rows=len(rows), tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True,
                       tbl_hide_column_data_types=True, fmt_str_lengths=60):
            text = str(pl.DataFrame(rows))
        notes = [f"{self.split} half of every probe; each model: score, difference to the base in points, "
                 "[95% paired-bootstrap interval], * = beyond the noise (the interval excludes 0); "
                 "set-scored probes (clustering, similarity) have no interval"]
        if self.split == "selection":
            notes.append("selection half: the probes searches and soups chose on; quote the test half "
                         "(--split test) as the result")
        notes += [f"{probe}: no row ({why})" for probe, why in self.skipped.items()]
        notes += [f"note: {note}" for note in self.notes]
        return text + "\n" + "\n".join(notes)

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "split": self.split, "base": self.base, "models": self.models,
                "records": [asdict(r) for r in self.records], "skipped": self.skipped, "notes": self.notes}

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(VerdictRecord)], lineterminator="\n")
        writer.writeheader()
        for record in self.records:
            writer.writerow(asdict(record))
        return out.getvalue()


def probe_roles(recipe: Recipe) -> dict[str, str]:
    """{probe: role}: "held-out" for probe-only families; a pareto recipe's trained families are
    "domain" or "general" (objective.domain); a weighted recipe's are "trained"."""
    domain = set(recipe.objective.domain)
    roles = {}
    for name in recipe.family_names():
        roles[name] = ("domain" if name in domain else "general") if domain else "trained"
    roles.update({name: "held-out" for name in recipe.probe_names_only()})
    return roles


def check_models(models: Sequence[str], base: str) -> dict[str, str]:
    """{label: loadable reference} of the models and the base, checked before anything loads:
    a missing folder, a folder that is not a model, a model named twice, are one line each."""
    from soupkit.base_model import resolve_base

    if not models:
        raise SoupkitError("give at least one MODEL to evaluate (a model folder, a hub id or bundled:NAME)")
    refs = {BASE_LABEL: resolve_base(base, "base model")}
    for model in models:
        if model == BASE_LABEL:
            raise SoupkitError(f"MODEL '{model}' names the base model's column; give its folder instead")
        if model in refs:
            raise SoupkitError(f"MODEL '{model}' is given twice")
        refs[model] = resolve_base(model, "model")
    return refs


def check_outputs(*paths: Path | None) -> None:
    """Refuse, before any scoring, an output file that cannot be written (a folder, a read-only place)."""
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise SoupkitError(f"{path} is a folder; give a file name for the verdict")
        check_can_write(path.parent, "folder of")


def evaluate_models(models: Sequence[str], recipe: Recipe, base: str | None = None, split: str = "test",
                    base_dir: Path | None = None, log: Callable[[str], None] | None = None,
                    device: str | None = None, trust_remote_code: bool = False,
                    train: str | None = None) -> Verdict:
    """Score each model and the base (default: the recipe's) on the `split` half of every probe of
    the recipe; each model against the base, probe by probe. A model that still holds the frozen
    bottom of `train` (default the recipe's `finetune.train` for its base) encodes on its existing trunk cache."""
    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.data.load import SPLITS, check_recipe, load_probes
    from soupkit.models.fetch import same_model
    from soupkit.models.trunk import join_trunk_cache
    from soupkit.probes.score import ProbeSettings, score_and_items
    from soupkit.soups.compare import differences

    if split not in SPLITS:
        raise SoupkitError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    base = base or recipe.base
    refs = check_models(models, base)
    check_recipe(recipe)
    log = log or (lambda _: None)
    probes = load_probes(recipe, split, base_dir, log)
    skipped = {name: f"its {split} half is empty: give the probe more items (probes.probe_size)"
               for name, family in probes.items() if family.probe is not None and _empty(family.probe)}
    probes = {name: f for name, f in probes.items() if f.probe is not None and name not in skipped}
    if not probes:
        raise SoupkitError(f"recipe '{recipe.name}' has no probe with items in its {split} half: nothing to evaluate")

    device = device or pick_device()
    settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))
    train = train or recipe.for_base(same_model).finetune.train  # finetune_by_base: e.g. EmbeddingGemma's top:2
    scores, items = {}, {}
    for label, ref in refs.items():
        model = load_model(ref, device, trust_remote_code=trust_remote_code,
                           what="base model" if label == BASE_LABEL else "model")
        join_trunk_cache(model, train, recipe.base)
        scores[label], items[label] = {}, {}
        for name, family in probes.items():
            scores[label][name], items[label][name] = score_and_items(model, family, settings)
        log(f"scored {label}: " + "  ".join(f"{k} {v:.3f}" for k, v in scores[label].items()))
        del model

    roles = probe_roles(recipe)
    records = []
    for label in models:
        found = {d.probe: d for d in differences(items, label, [BASE_LABEL], seed=recipe.seed)}
        for name, family in probes.items():
            d = found.get(name)
            score, base_score = scores[label][name], scores[BASE_LABEL][name]
            records.append(VerdictRecord(
                model=label, path=refs[label], probe=name, role=roles.get(name, "trained"), split=split,
                metric=family.probe.metric, items=d.items if d else None, score=round(score, 6),
                base_score=round(base_score, 6), difference=round(d.mean if d else score - base_score, 6),
                low=round(d.low, 6) if d else None, high=round(d.high, 6) if d else None,
                beyond_noise=d.beyond_noise if d else None, base=refs[BASE_LABEL]))
    notes = [] if split != "test" else [
        f"{run}'s study scored its trained families on their whole probes (made before every probe had a "
        "test half): on the trained families' rows the test half is selection-side; the held-out rows are clean"
        for run in sorted({run_folder_of(ref) for ref in refs.values()} - {None}) if _older_study(run)]
    return Verdict(recipe.name, split, base, list(models), records, skipped, notes)


def _older_study(run: Path) -> bool:
    """Whether the run's own study (a search's or adapt's) scored its trained families whole
    (soupkit.data.halves.HELD_OUT_HALVED: unrecorded, made before every probe was halved)."""
    import optuna

    from soupkit.search.study import default_storage
    from soupkit.study_record import StudyRecord, probe_split_of

    try:
        summaries = optuna.get_all_study_summaries(default_storage(run), include_best_trial=False)
    except Exception:  # not a study this soupkit can read: nothing to say about it
        return False
    own = [s for s in summaries if StudyRecord.of(s).stage in (None, "adapt") and s.n_trials]
    return bool(own) and probe_split_of(own[0]) is None


def _empty(probe) -> bool:
    columns = probe.text_columns()
    return not columns or any(len(texts) == 0 for texts, _ in columns)


def write_verdict(verdict: Verdict, json_path: Path | None = None, csv_path: Path | None = None) -> list[Path]:
    """Write the JSON and CSV asked for, and each run folder's verdict.json for the models that
    are a run's soups. Returns the files written."""
    written = []
    if json_path is not None:
        atomic_write_text(Path(json_path), json.dumps(verdict.to_json(), indent=1) + "\n")
        written.append(Path(json_path))
    if csv_path is not None:
        atomic_write_text(Path(csv_path), verdict.csv_text())
        written.append(Path(csv_path))
    for run, records in _by_run_folder(verdict).items():
        written.append(_merge_run_verdict(run, records))
    return written


def run_folder_of(path: str) -> Path | None:
    """The run folder of a model that is a run's soup (`<run>/soups/<name>` beside a study), or None."""
    folder = Path(path)
    if folder.parent.name != "soups":
        return None
    run = folder.parent.parent
    return run if (run / "recipe.yaml").is_file() and (run / "study.db").is_file() else None


def _by_run_folder(verdict: Verdict) -> dict[Path, list[VerdictRecord]]:
    runs: dict[Path, list[VerdictRecord]] = {}
    for record in verdict.records:
        run = run_folder_of(record.path)
        if run is not None:
            runs.setdefault(run, []).append(record)
    return runs


def _merge_run_verdict(run: Path, records: list[VerdictRecord]) -> Path:
    """<run>/verdict.json keeps the latest verdict of each (soup, split): a later eval of one soup
    replaces its records and leaves the other soups'."""
    target = run / VERDICT_FILE
    kept = [r for r in read_run_verdict(run)
            if (r["path"], r["split"]) not in {(x.path, x.split) for x in records}]
    merged = kept + [asdict(r) for r in records]
    atomic_write_text(target, json.dumps({"records": merged}, indent=1) + "\n")
    return target


def read_run_verdict(run: Path) -> list[dict]:
    """The verdict records a run folder holds (`soupkit eval` of its soups); [] when none or unreadable."""
    target = Path(run) / VERDICT_FILE
    try:
        data = json.loads(target.read_text())
    except (OSError, ValueError):
        return []
    records = data.get("records") if isinstance(data, dict) else None
    return [r for r in records if isinstance(r, dict) and {"path", "split", "probe"} <= set(r)] if records else []
