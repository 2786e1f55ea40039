"""What a soupkit study and its trials hold: every attribute key, its type, its reader and writer.

The Optuna study is the one record of a search. Its user and system attributes are written and
read only through this module, so a key is spelled once. Orchestrations (search/, soups/,
report/) use it; the libraries (data/, probes/, train/, merge/) know nothing of studies.

Besides the typed `mixture` and `scores` dictionaries, each trial carries one number per family
(`weight <family>`) and per probe (`score <probe>`): optuna-dashboard sorts, filters and plots
numeric user attributes, so the dashboard shows a mixture as weights, not as the raw `x_<family>`
draws of the search space.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# trial user attributes
MIXTURE = "mixture"  # {family: weight}, the normalised weights the trial trained on
WEIGHTS = "weights"  # {checkpoint: weight}, an adapt proposal's soup weights over its bank
SCORES = "scores"  # {probe: score}
OBJECTIVE = "objective"  # the scalar objective: the recipe's weighted mean over every probe
CHECKPOINT = "checkpoint"  # absolute path of the trial's model folder
SECONDS = "seconds"  # {"finetune": s, "probe": s[, "milestones": s]}
MILESTONES = "milestones"  # {step: objective} at the milestone steps of the finetune (JSON: step as text)
MILESTONE_FRACTION = "milestone_fraction"  # the share of the probe items they scored, when not all
PRUNED_AT = "pruned_at"  # the milestone step at which the pruner stopped the trial
FINAL_LOSS = "final_loss"
WORKER = "worker"  # {"host": ..., "pid": ...} of the process that ran it
SAMPLER = "sampler"  # the sampler of that process: workers of one study may run different ones
ERROR = "error"  # why it failed ("interrupted" after Ctrl-C)
SKIPPED = "skipped"  # why it gave way (state PRUNED, like a trial the pruner stopped) instead of running
SEEDED = "seeded"  # "recipe" for the recipe's seed mixture, queued before the first trial
RETRY_OF = "retry_of"  # the number of the failed trial whose mixture it runs again
BASE = "base"  # an ingredient's base model, when it differs from the study's
WEIGHT_PREFIX = "weight "  # + family: one number per family, for the dashboard
SCORE_PREFIX = "score "  # + probe: one number per probe, for the dashboard
QUEUED_ATTRS = (SEEDED, RETRY_OF)  # what a re-queued mixture carries over

# study user attributes
RECIPE = "recipe"  # the effective recipe (JSON): what every trial of the study shares
BASE_MODEL = "base_model"
BASE_SCORES = "base_scores"  # {probe: score} of the base model
BASE_OBJECTIVE = "base_objective"
BASE_VALUES = "base_values"  # the study's objective values for the base model
DATA_SECONDS = "data_seconds"  # time to build the families
HELD_OUT_PROBES = "held_out_probes"  # older studies: what the held-out probes were scored on (search.study.HELD_OUT_HALVES)
PROBE_SPLIT = "probe_split"  # what every probe was scored on: one of soupkit.data.halves.SPLIT_SCHEMES
STAGE = "stage"  # the stage that made the study: none for a search, "ingredients", "experts", "adapt"
BANK = "bank"  # an adapt study's bank: [{label, path, kind, run}]
INGREDIENTS = "ingredients"  # an ingredient study's trained ingredients, as soups are recorded
HELD_OUT_OVERLAPS = "held_out_overlaps"  # an adapt study's held-out probes whose source a bank run trained on
CPU_SECONDS = "cpu_seconds"  # summed over every run of an adapt study
WALL_SECONDS = "wall_seconds"
SOUPS = "soups"  # {name: SoupRecord as a dict}
RUN_ID = "run_id"  # a random id given once to a search study: the checkpoints folder it owns names it

INTERRUPTED = "interrupted"
WORKER_DIED = "worker process died"


def pruned_text(step: int, objective: float) -> str:
    """What a trial the pruner stopped says of itself, in the log, the error and the report."""
    return f"pruned at step {step}: objective {objective:.4f}"


def stopped_by_pruner(trial) -> bool:
    """A trial the pruner stopped at a milestone: it did its share of the work, so the budget
    counts it, unlike a trial that gave way (also PRUNED, with `skipped`) before it trained."""
    return trial.state.name == "PRUNED" and trial.user_attrs.get(PRUNED_AT) is not None


def objective_of(trial) -> float:
    """A completed trial's scalar objective (for a pareto study, not one of its values)."""
    value = trial.user_attrs.get(OBJECTIVE)
    return float(value if value is not None else trial.values[0])


@dataclass(frozen=True)
class TrialRecord:
    """What one trial holds, read from an Optuna trial (frozen or live)."""

    number: int
    state: str
    mixture: dict[str, float]
    scores: dict[str, float]
    objective: float | None
    values: list[float] | None
    checkpoint: Path | None
    seconds: dict[str, float]
    error: str | None
    skipped: str | None
    retry_of: int | None
    seeded: str | None
    worker: dict[str, Any]
    base: str | None = None
    milestones: dict[int, float] = field(default_factory=dict)
    pruned_at: int | None = None
    sampler: str | None = None  # None for trials recorded before soupkit kept it
    milestone_fraction: float = 1.0

    @classmethod
    def of(cls, trial) -> TrialRecord:
        attrs = trial.user_attrs
        values = list(trial.values) if getattr(trial, "values", None) else None
        objective = attrs.get(OBJECTIVE, values[0] if values else None)
        checkpoint = attrs.get(CHECKPOINT)
        return cls(
            number=trial.number,
            state=trial.state.name,
            mixture=dict(attrs.get(MIXTURE) or attrs.get(WEIGHTS) or {}),
            scores=dict(attrs.get(SCORES) or {}),
            objective=float(objective) if objective is not None else None,
            values=values,
            checkpoint=Path(checkpoint) if checkpoint else None,
            seconds=dict(attrs.get(SECONDS) or {}),
            error=attrs.get(ERROR),
            skipped=attrs.get(SKIPPED),
            retry_of=attrs.get(RETRY_OF),
            seeded=attrs.get(SEEDED),
            worker=dict(attrs.get(WORKER) or {}),
            base=attrs.get(BASE) if isinstance(attrs.get(BASE), str) else None,
            milestones={int(step): float(v) for step, v in (attrs.get(MILESTONES) or {}).items()},
            pruned_at=attrs.get(PRUNED_AT),
            sampler=attrs.get(SAMPLER),
            milestone_fraction=float(attrs.get(MILESTONE_FRACTION, 1.0)),
        )

    def pruned(self) -> str | None:
        """Where the pruner stopped this trial ("pruned at step 8: objective 0.7412"), or None."""
        if self.pruned_at is None:
            return None
        return pruned_text(self.pruned_at, self.milestones.get(self.pruned_at, float("nan")))

    def has_model(self, run: Path | None = None) -> bool:
        """Completed, with its model folder still on disk (as seen from run folder `run`)."""
        folder = self.checkpoint_in(run)
        return self.state == "COMPLETE" and folder is not None and (folder / "modules.json").is_file()

    def checkpoint_in(self, run: Path | None) -> Path | None:
        """The trial's model folder as run folder `run` holds it: a copied or moved run keeps its
        models under the same names in its own folder, while its study records the original's
        absolute paths: where the run has a folder of that name (`trials/`), the model is the one in
        it or none. A checkpoint outside any run (`--checkpoints`) is the recorded one."""
        recorded = self.checkpoint
        if recorded is None or run is None:
            return recorded
        run = Path(run).resolve()
        if run in recorded.resolve().parents:
            return recorded
        own = run / recorded.parent.name
        return own / recorded.name if own.is_dir() else recorded


# writers for a live trial (optuna.Trial)

def record_worker(trial, worker: Mapping[str, Any], sampler: str | None = None) -> None:
    trial.set_user_attr(WORKER, dict(worker))
    if sampler is not None:
        trial.set_user_attr(SAMPLER, sampler)


def record_error(trial, reason: str) -> None:
    trial.set_user_attr(ERROR, reason.splitlines()[0][:500] if reason else reason)


def record_skipped(trial, reason: str) -> None:
    trial.set_user_attr(SKIPPED, reason)


def record_mixture(trial, weights: Mapping[str, float]) -> None:
    trial.set_user_attr(MIXTURE, dict(weights))
    for family, weight in weights.items():
        trial.set_user_attr(WEIGHT_PREFIX + family, float(weight))


def record_proposal(trial, weights: Mapping[str, float], scores: Mapping[str, float], objective: float,
                    seconds: Mapping[str, float]) -> None:
    """An adapt proposal: its soup weights over the bank (no -0.0), scores, objective and seconds."""
    weights = {k: round(v, 6) + 0.0 for k, v in weights.items()}
    trial.set_user_attr(WEIGHTS, weights)
    for label, weight in weights.items():
        trial.set_user_attr(WEIGHT_PREFIX + label, weight)
    _record_scores(trial, scores, objective, seconds)


def record_milestone(trial, step: int, objective: float, fraction: float = 1.0) -> None:
    """Add one milestone's objective to the trial's curve (Optuna's intermediate values hold the
    same numbers for a one-objective study; a pareto study has none, this curve it has), and the
    share of the probe items it scored when not all (`search.milestone_fraction`)."""
    milestones = dict(trial.user_attrs.get(MILESTONES) or {})
    milestones[str(step)] = objective
    trial.set_user_attr(MILESTONES, milestones)
    if fraction < 1:
        trial.set_user_attr(MILESTONE_FRACTION, fraction)


def record_pruned(trial, step: int, seconds: Mapping[str, float]) -> None:
    """The pruner stopped the trial at milestone `step`, after `seconds` of work."""
    trial.set_user_attr(PRUNED_AT, step)
    trial.set_user_attr(SECONDS, dict(seconds))


def record_checkpoint(trial, folder: Path) -> None:
    trial.set_user_attr(CHECKPOINT, str(Path(folder).resolve()))


def record_result(trial, scores: Mapping[str, float], objective: float, seconds: Mapping[str, float],
                  final_loss: float | None) -> None:
    _record_scores(trial, scores, objective, seconds)
    trial.set_user_attr(FINAL_LOSS, final_loss)


def _record_scores(trial, scores: Mapping[str, float], objective: float, seconds: Mapping[str, float]) -> None:
    trial.set_user_attr(SCORES, dict(scores))
    for probe, score in scores.items():
        trial.set_user_attr(SCORE_PREFIX + probe, float(score))
    trial.set_user_attr(OBJECTIVE, objective)
    trial.set_user_attr(SECONDS, dict(seconds))


def record_worker_died(storage, study_name: str, number: int) -> None:
    """Fail a trial whose worker died, through the storage (the live trial is that worker's)."""
    from optuna.trial import TrialState

    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
    storage.set_trial_user_attr(trial_id, ERROR, WORKER_DIED)
    storage.set_trial_state_values(trial_id, state=TrialState.FAIL)


def trial_params(trial) -> dict[str, float]:
    """A trial's mixture params: suggested, or fixed by `enqueue_trial` (an Optuna system attribute)."""
    return dict(trial.params) or dict(trial.system_attrs.get("fixed_params") or {})


def artifact_records(storage, study_name: str) -> list[dict[str, Any]]:
    """optuna.artifacts' records of a study's artifacts (system attributes); deleted ones are null."""
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study_name))
    metas = [json.loads(v) for k, v in attrs.items() if k.startswith("artifacts:")]
    return [m for m in metas if m]


def queued_attrs(trial) -> dict[str, Any]:
    """The attributes a trial's mixture keeps when it is queued again (seed mark, retry number)."""
    return {k: v for k, v in trial.user_attrs.items() if k in QUEUED_ATTRS}


def seeded_attrs(why: str = "recipe") -> dict[str, Any]:
    """What a queued seed carries: why it was queued ("recipe", "uniform", "base alone", ...)."""
    return {SEEDED: why}


def retry_attrs(number: int) -> dict[str, Any]:
    return {RETRY_OF: number}


# the study

@dataclass
class SoupRecord:
    """A soup recorded in the study: how it was made and how it scored."""

    method: str
    members: list[int | str]  # trial numbers, or bank labels for an adapt soup
    scores: dict[str, float]
    objective: float
    values: list[float]
    path: str
    base_share: float = 0.0
    weights: dict[str, float] = field(default_factory=dict)  # an adapt soup's weights over its bank
    role: str = ""  # an adapt soup's place on the front (e.g. "shipped")
    trial: int | None = None  # the adapt proposal it was written from

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SoupRecord:
        return cls(
            method=data.get("method", "?"),
            members=[int(m) if isinstance(m, int) or str(m).isdigit() else str(m) for m in data.get("members", [])],
            scores=dict(data.get("scores") or {}),
            objective=float(data["objective"]) if data.get("objective") is not None else float("nan"),
            values=list(data.get("values") or []),
            path=str(data.get("path", "")),
            base_share=float(data.get("base_share") or 0.0),
            weights=dict(data.get("weights") or {}),
            role=str(data.get("role") or ""),
            trial=int(data["trial"]) if data.get("trial") is not None else None,
        )


@dataclass(frozen=True)
class StudyRecord:
    """What the study itself holds, read once."""

    recipe_json: str | None
    base_model: str | None
    base_scores: dict[str, float]
    base_objective: float | None
    base_values: list[float] | None
    data_seconds: float | None
    soups: dict[str, SoupRecord] = field(default_factory=dict)
    stage: str | None = None
    bank: list[dict[str, Any]] | None = None
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    # recorded model folders (soups, ingredients): attribute -> {name: (folder, objective)}
    models: dict[str, dict[str, tuple[Path | None, float | None]]] = field(default_factory=dict)

    @classmethod
    def of(cls, study) -> StudyRecord:
        attrs = study.user_attrs
        return cls(
            recipe_json=attrs.get(RECIPE),
            base_model=attrs.get(BASE_MODEL),
            base_scores=dict(attrs.get(BASE_SCORES) or {}),
            base_objective=attrs.get(BASE_OBJECTIVE),
            base_values=attrs.get(BASE_VALUES),
            data_seconds=attrs.get(DATA_SECONDS),
            soups={name: SoupRecord.from_dict(s) for name, s in (attrs.get(SOUPS) or {}).items()},
            stage=attrs.get(STAGE),
            bank=attrs.get(BANK),
            cpu_seconds=float(attrs.get(CPU_SECONDS) or 0.0),
            wall_seconds=float(attrs.get(WALL_SECONDS) or 0.0),
            models={key: {name: _model_of(r) for name, r in _named_records(attrs.get(key))}
                    for key in (SOUPS, INGREDIENTS)},
        )

    def recipe(self):
        """The recipe the study was run with, validated again (a field added since gets its default)."""
        from soupkit.config import Recipe

        return None if self.recipe_json is None else Recipe.model_validate(json.loads(self.recipe_json))


def _model_of(record: dict) -> tuple[Path | None, float | None]:
    """A recorded model's folder (`path`; an ingredient's `checkpoint`) and objective."""
    folder, objective = record.get("path") or record.get("checkpoint"), record.get("objective")
    return (Path(folder) if folder else None), (float(objective) if objective is not None else None)


def _named_records(value) -> list[tuple[str, dict]]:
    """{name: record} or [record with a name] -> [(name, record)], skipping what is not a record."""
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items() if isinstance(v, dict)]
    if isinstance(value, list):
        return [(str(v.get("name", i)), v) for i, v in enumerate(value) if isinstance(v, dict)]
    return []


def record_recipe(study, recipe_json: str) -> None:
    study.set_user_attr(RECIPE, recipe_json)


def record_base(study, scores: Mapping[str, float], objective: float, values: list[float],
                base_model: str | None = None, data_seconds: float | None = None) -> None:
    """The base model's scores, objective and values; a search adds the base model and the time its
    families took to build."""
    for key, value in {BASE_SCORES: dict(scores), BASE_MODEL: base_model, BASE_OBJECTIVE: objective,
                       BASE_VALUES: list(values), DATA_SECONDS: data_seconds}.items():
        if value is not None:
            study.set_user_attr(key, round(value, 2) if key == DATA_SECONDS else value)


def run_id(study) -> str | None:
    value = study.user_attrs.get(RUN_ID)
    return value if isinstance(value, str) else None


def record_run_id(study) -> str:
    """The study's run id, given now if it has none (a study made before soupkit kept one)."""
    import uuid

    value = run_id(study)
    if value is None:
        value = uuid.uuid4().hex
        study.set_user_attr(RUN_ID, value)
    return value


def held_out_mark(study) -> str | None:
    return study.user_attrs.get(HELD_OUT_PROBES)


def record_held_out_mark(study, mark: str) -> None:
    study.set_user_attr(HELD_OUT_PROBES, mark)


def probe_split_of(study) -> str | None:
    """The split scheme a study's scores used (soupkit.data.halves.SPLIT_SCHEMES), None when unrecorded."""
    return study.user_attrs.get(PROBE_SPLIT)


def record_probe_split(study, scheme: str) -> None:
    study.set_user_attr(PROBE_SPLIT, scheme)


def record_stage(study, stage: str, bank: list[dict[str, Any]] | None = None,
                 held_out_overlaps: list[str] | None = None) -> None:
    study.set_user_attr(STAGE, stage)
    if bank is not None:
        study.set_user_attr(BANK, bank)
    if held_out_overlaps is not None:
        study.set_user_attr(HELD_OUT_OVERLAPS, list(held_out_overlaps))


def add_seconds(study, cpu: float, wall: float) -> StudyRecord:
    """Add one run's CPU and wall seconds to the study's totals; the record with the new totals."""
    before = StudyRecord.of(study)
    study.set_user_attr(CPU_SECONDS, round(before.cpu_seconds + cpu, 1))
    study.set_user_attr(WALL_SECONDS, round(before.wall_seconds + wall, 1))
    return StudyRecord.of(study)


def record_soup(study, name: str, soup: SoupRecord) -> None:
    """Add or replace one soup; the other soups recorded in the study stay."""
    soups = dict(study.user_attrs.get(SOUPS) or {})
    soups[name] = asdict(soup)
    study.set_user_attr(SOUPS, soups)


def metric_names(two_objectives: bool) -> list[str]:
    """The names of the study's objective values, as the dashboard and the report show them."""
    return ["domain", "general"] if two_objectives else ["objective"]


def values_text(values: list[float], base: list[float] | None = None) -> str:
    """`objective 0.7612` or `domain 0.7100 general 0.8000`; with the base's values, comma-separated
    and each value's difference to the base."""
    names = metric_names(len(values) == 2)
    if base is None:
        return " ".join(f"{name} {value:.4f}" for name, value in zip(names, values))
    return ", ".join(f"{name} {value:.4f}" + (f" ({value - b:+.4f} vs base)" if b is not None else "")
                     for name, value, b in zip(names, values, base or [None] * len(names)))


def two_objectives(study) -> bool:
    """A study of a two-objective recipe (config.ObjectiveSpec.two_objectives)."""
    return len(study.directions) == 2


# ingredient studies (`soupkit ingredients`): a study beside a search's, one trial per ingredient

BESIDE = "search_study"  # on a study that sits beside a search's in its storage: that search's name
SETS = "sets"  # {set name: the choice of one `soupkit ingredients` call, soups.ingredient_study.IngredientSet}
BASES = "bases"  # {base model: its probe scores}: the bases ingredients were finetuned from
KEY = "key"  # what makes two ingredients the same model (mixture, base, finetune settings, seed)
SOURCE_TRIAL = "source_trial"  # the search trial whose mixture an ingredient trains
FINETUNE = "finetune"  # an ingredient's finetune settings
SET = "set"  # the set an ingredient was first trained for


def beside_of(study) -> str | None:
    """The search a study (or a study summary) sits beside, if it is a later stage's study."""
    return study.user_attrs.get(BESIDE)


def record_beside(study, stage: str, search_name: str) -> None:
    study.set_user_attr(STAGE, stage)
    study.set_user_attr(BESIDE, search_name)


def ingredient_sets(study) -> dict[str, dict[str, Any]]:
    return dict(study.user_attrs.get(SETS) or {})


def record_ingredient_set(study, name: str, body: Mapping[str, Any]) -> None:
    sets = ingredient_sets(study)
    sets[name] = json.loads(json.dumps(dict(body)))  # plain JSON types only
    study.set_user_attr(SETS, sets)


def scores_by_base(study) -> dict[str, dict[str, float]]:
    return dict(study.user_attrs.get(BASES) or {})


def record_scores_by_base(study, base: str, scores: Mapping[str, float]) -> None:
    bases = scores_by_base(study)
    bases[base] = dict(scores)
    study.set_user_attr(BASES, bases)


def record_ingredient(trial, key: str, source_trial: int, base: str, finetune: Mapping[str, Any], set_name: str) -> None:
    for attr, value in {KEY: key, SOURCE_TRIAL: source_trial, BASE: base, FINETUNE: dict(finetune),
                        SET: set_name}.items():
        trial.set_user_attr(attr, value)


def ingredient_key_of(trial) -> str | None:
    return trial.user_attrs.get(KEY)



# expert studies (`soupkit experts`): a study beside a search's, one trial per expert, and the
# banks they form; a search by merging (`soupkit search --by-merging`) marks its study and trials

EXPERT_FAMILY = "expert_family"  # the family an expert is the expert of
GENERAL_SHARE = "general_share"  # the share of its batches drawn from the recipe's general families
EXPERT_BANKS = "expert_banks"  # {bank name: {"settings": {...}, "experts": {family: trial number | None}}}
MERGE_PROXY = "merge_proxy"  # on a search study and its trials: the expert bank its proposals merge


def record_expert(trial, key: str, family: str, share: float, base: str, finetune: Mapping[str, Any],
                  bank: str) -> None:
    for attr, value in {KEY: key, EXPERT_FAMILY: family, GENERAL_SHARE: share, BASE: base,
                        FINETUNE: dict(finetune), SET: bank}.items():
        trial.set_user_attr(attr, value)


def expert_family_of(trial) -> str | None:
    return trial.user_attrs.get(EXPERT_FAMILY)


def expert_banks(study) -> dict[str, dict[str, Any]]:
    return dict(study.user_attrs.get(EXPERT_BANKS) or {})


def record_expert_bank(study, name: str, body: Mapping[str, Any]) -> None:
    banks = expert_banks(study)
    banks[name] = json.loads(json.dumps(dict(body)))
    study.set_user_attr(EXPERT_BANKS, banks)


def merge_proxy_of(study_or_trial) -> str | None:
    """The expert bank a search by merging (or one of its trials) merged; None for a trained search."""
    return study_or_trial.user_attrs.get(MERGE_PROXY)


def record_merge_proxy(study_or_trial, bank: str) -> None:
    study_or_trial.set_user_attr(MERGE_PROXY, bank)
