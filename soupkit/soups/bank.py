"""The bank of an `adapt` run: every checkpoint that earlier runs left, and their base models.

A run folder's storage holds the search's study and those of later stages (the ingredient study
of `soupkit ingredients`, the expert study of `soupkit experts`). Their trials record checkpoints (`checkpoint`), their `soups` (and any
`ingredients` record) a `path`, and the search records the base model it started from (an
ingredient its own `base`). Every one whose folder still holds a model is a bank member; so is
each base (the run's `base-model` folder when a soup saved one, else the recorded base).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from soupkit.errors import SoupkitError
from soupkit.study_record import INGREDIENTS, SOUPS, StudyRecord, TrialRecord

BASE_LABEL = "base"
RECORD_KINDS = {SOUPS: "soup", INGREDIENTS: "ingredient"}  # study attribute -> member kind


@dataclass(frozen=True)
class BankMember:
    label: str  # unique in the bank; also the Optuna parameter's name (x_<label>)
    path: Path | None  # a model folder; None for a base known only by hub id (saved later)
    kind: str  # trial | soup | ingredient | expert | base
    run: str  # the run folder it came from ("" for a base shared by several runs)
    objective: float | None = None  # its scalar objective in its own run's study
    reference: str = ""  # for a base: the recorded reference (folder, bundled, hub id)


def check_run_folders(runs: Sequence[Path]) -> None:
    """Every run is a folder with a study, each named once: one line naming the first that is not."""
    if not runs:
        raise SoupkitError("adapt needs at least one run folder after --bank (e.g. --bank runs/default)")
    seen: set[Path] = set()
    for run in runs:
        if not (Path(run) / "study.db").is_file():
            raise SoupkitError(f"--bank {run}: no study found ({Path(run) / 'study.db'} does not exist; "
                               "run `soupkit search --out` there first)")
        resolved = Path(run).resolve()
        if resolved in seen:
            raise SoupkitError(f"--bank {run}: run named twice")
        seen.add(resolved)


def open_run_studies(run: Path) -> list:
    """Every study in a run folder's study.db: the search's, and those of later stages that share
    its storage (an ingredient study marks itself with the attribute `stage`)."""
    import optuna

    from soupkit.search.study import default_storage, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(default_storage(Path(run)))
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if not names:
        raise SoupkitError(f"--bank {run}: its study.db holds no study")
    return [optuna.load_study(study_name=name, storage=storage) for name in names]


def collect_bank(runs: Sequence[Path], log: Callable[[str], None] = print) -> list[BankMember]:
    """The bank: the base model(s) first, then each run's trials, ingredients and soups, each
    folder once (the first label that reaches it wins)."""
    check_run_folders(runs)
    bases: dict[str, BankMember] = {}
    members: list[BankMember] = []
    for run, name in zip(runs, _run_names(runs)):
        found = []
        for study in open_run_studies(run):
            for base in _bases_of(study, Path(run)):
                bases.setdefault(str(base.path or base.reference), base)
            found.extend(_checkpoints(study, name, Path(run)))
        experts = sum(m.kind == "expert" for m in found)
        log(f"bank: {run}: {sum(m.kind == 'trial' for m in found)} trials, "
            f"{sum(m.kind == 'ingredient' for m in found)} ingredients, {sum(m.kind == 'soup' for m in found)} soups"
            + (f", {experts} experts" if experts else ""))
        members.extend(found)
    labelled = [_base_label(b, i, len(bases)) for i, b in enumerate(bases.values())] + members
    unique, seen, labels = [], set(), set()
    for member in labelled:
        key = member.path.resolve() if member.path is not None else member.reference
        if key in seen:
            continue
        seen.add(key)
        label, n = member.label, 1
        while label in labels:  # two stages' soups of one name
            n += 1
            label = f"{member.label}-{n}"
        labels.add(label)
        unique.append(replace(member, label=label))
    return unique


def held_out_overlaps(recipe, runs: Sequence[Path]) -> list[str]:
    """Held-out probes of `recipe` whose source a bank run trained on. The bank's runs were made for
    other recipes, which never held these probes out: a default search trains on WordNet glosses
    (topic-classification), the very documents of the medical-wordnet probe. A gain there then
    measures memory of the source, not generalisation; each such pair is said, not hidden."""
    from soupkit.config import family_name
    from soupkit.data.load import _registry

    registry = _registry()

    def source(name: str) -> str | None:
        return registry.get(name).source.split(";")[0] if name in registry else None

    held_out = {family_name(f): source(family_name(f)) for f in recipe.probe_only}
    lines = []
    for run in runs:
        trained: dict[str, None] = {}
        for study in open_run_studies(run):
            families = json.loads(StudyRecord.of(study).recipe_json or "{}").get("families") or []
            trained.update(dict.fromkeys(f if isinstance(f, str) else f.get("name", "") for f in families))
        for probe, probe_source in held_out.items():
            same = [f for f in trained if f == probe or (probe_source and source(f) == probe_source)]
            if same:
                lines.append(f"held-out probe '{probe}' ({probe_source or 'your data'}) is not held out from bank run "
                             f"{run}: it trained on {', '.join(same)} from the same source")
    return lines


def _run_names(runs: Sequence[Path]) -> list[str]:
    names = [Path(r).resolve().name for r in runs]
    return [n if names.count(n) == 1 else f"{n}{i}" for i, n in enumerate(names)]


def _base_label(base: BankMember, index: int, count: int) -> BankMember:
    return replace(base, label=BASE_LABEL if count == 1 else f"{BASE_LABEL}-{index}")


def _bases_of(study, run: Path) -> list[BankMember]:
    """The bases a study's checkpoints were finetuned from: the run's base as its trials were saved
    (`<run>/base-model`, written by `soupkit soup --with-base`) or the recorded reference, and any
    other base an ingredient names. A study that records none (a later stage's) adds none."""
    references = []
    record = StudyRecord.of(study)
    recorded = record.base_model or json.loads(record.recipe_json or "{}").get("base")
    if recorded and not record.stage:
        saved = run / "base-model"
        if (saved / "modules.json").is_file():
            return [BankMember(BASE_LABEL, saved, "base", run.name, reference=str(saved))]
        references.append(recorded)
    references += [base for base in (TrialRecord.of(t).base for t in study.get_trials(deepcopy=False)) if base]
    return [_base_member(reference, run) for reference in dict.fromkeys(references)]


def _base_member(reference: str, run: Path) -> BankMember:
    """A base known by reference (hub id, `bundled:...`, a folder): `soupkit adapt` loads it and saves
    it once under its run folder, so that it is written by the same library as the checkpoints. A
    folder written by another sentence-transformers version (the bundled model's lacks the pooling
    config's `embedding_dimension`) would otherwise fail the merge checks and leave no base."""
    return BankMember(BASE_LABEL, None, "base", run.name, reference=reference)


def _checkpoints(study, run_name: str, run: Path | None = None) -> Iterator[BankMember]:
    """A search study's trials, an ingredient study's ingredients, and either's recorded soups
    (a copied or moved run's own models: TrialRecord.checkpoint_in)."""
    study_record = StudyRecord.of(study)
    trial_kind = {"ingredients": "ingredient", "experts": "expert"}.get(study_record.stage or "", "trial")
    for trial in map(TrialRecord.of, study.get_trials(deepcopy=False)):
        if trial.has_model(run):
            yield BankMember(f"{run_name}:{trial_kind}-{trial.number:04d}", trial.checkpoint_in(run), trial_kind, run_name,
                             trial.objective)
    for attribute, kind in RECORD_KINDS.items():
        for name, (folder, objective) in study_record.models[attribute].items():
            if folder and _is_model(folder):
                yield BankMember(f"{run_name}:{kind}-{name}", folder, kind, run_name, objective)


def _is_model(folder: str | Path) -> bool:
    return (Path(folder) / "modules.json").is_file()
