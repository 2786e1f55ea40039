"""`soupkit adapt`: a domain soup without training. Search the soup's weights over a bank of
checkpoints that earlier runs left, merging each proposal in memory and scoring it on the probes.

The bank (soupkit.soups.bank) is every checkpoint of the named runs plus their base model;
members that do not merge with the rest are named and left out. An Optuna study (GP sampler) over
the same simplex space as mixtures proposes weights, seeded with the base alone, the uniform soup
and the single best checkpoints. Each proposal is written into one preallocated model
(soupkit.merge.in_memory) and scored; no folder is written until the end, when the best soups
(weighted recipe) or the Pareto front and the shipped soup (pareto recipe) are written under
`<out>/soups/`, scored again from disk and recorded, with their weights, in the study.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from soupkit.atomic import atomic_dir
from soupkit.config import Recipe
from soupkit.errors import SoupkitError
from soupkit.soups.bank import BASE_LABEL, BankMember, check_run_folders, collect_bank, held_out_overlaps
from soupkit.study_record import (
    SoupRecord,
    StudyRecord,
    TrialRecord,
    add_seconds,
    record_proposal,
    record_soup,
    record_stage,
    seeded_attrs,
    values_text,
)

STUDY_SUFFIX = "-adapt"
RANDOM_STARTUP = 2  # Dirichlet draws after the seeds, before the GP takes over
GENERAL_TOLERANCE = 0.01  # pareto: how far below the base a general probe of the shipped soup may fall


@dataclass
class AdaptSoup:
    name: str
    trial: int
    role: str  # ship (pareto: the best domain score within the general bound) | best | front
    weights: dict[str, float]  # bank label -> share, members with a share > 0
    path: Path
    scores: dict[str, float]
    objective: float
    values: list[float]


@dataclass
class AdaptResult:
    study_name: str
    out: Path
    bank: list[BankMember]
    skipped: dict[str, str]  # label -> why it does not merge
    soups: list[AdaptSoup]
    base_scores: dict[str, float]
    base_values: list[float]
    proposals: int
    cpu_seconds: float
    wall_seconds: float
    seconds: dict[str, float] = field(default_factory=dict)  # merge / probe totals of the proposals


def run_adapt(
    recipe: Recipe,
    runs: Sequence[Path],
    out: Path,
    budget: int = 20,
    recipe_path: Path | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
    keep: int = 3,
    singles: int = 2,
) -> AdaptResult:
    """Search soup weights over the bank of `runs` for `budget` proposals (resuming a study
    already in `out`), then write and record the best soups."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    from soupkit.data.load import check_recipe

    if budget < 1:
        raise SoupkitError(f"--budget must be a positive number of proposals, got {budget}")
    if keep < 1:
        raise SoupkitError(f"--keep must be at least 1, got {keep}")
    check_recipe(recipe, recipe_path)
    runs, out = [Path(r) for r in runs], Path(out)
    check_run_folders(runs)
    _check_out(out, runs, recipe.name + STUDY_SUFFIX)
    bank = collect_bank(runs, log)

    from soupkit.base_model import pick_device, use_bf16
    from soupkit.data.load import load_recipe_families, probes_for_scheme
    from soupkit.search.study import check_held_out_halves
    from soupkit.merge.in_memory import InMemoryMerge
    from soupkit.probes.score import ProbeSettings

    # the probes (the user's own data above all) are checked before the bank's base is written
    families, probes = load_recipe_families(recipe, recipe_path.parent if recipe_path else None, log=log)
    bank, skipped = _mergeable(bank, out, recipe, log)
    overlaps = held_out_overlaps(recipe, runs)
    for line in overlaps:
        log(f"warning: {line}")
    device = pick_device()
    settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))
    start = time.perf_counter()
    merger = InMemoryMerge([m.path for m in bank], device)
    log(f"bank: {len(bank)} models ({merger.parameter_count / 1e6:.1f}M merged parameters each) loaded in "
        f"{time.perf_counter() - start:.1f}s")
    _join_trunk_cache(merger, recipe, log)
    study = _open(recipe, out, bank, overlaps)  # after every check and load: a mistake leaves no study behind
    probes = probes_for_scheme(families, probes, recipe.seed, check_held_out_halves(study, recipe))

    _seed(study, bank, singles, recipe.seed)
    totals = _propose(study, recipe, bank, merger, probes, settings, budget, log)
    del merger
    base_scores = _base_scores(study)
    soups = _write_soups(study, recipe, bank, out, probes, settings, device, keep, command, log)
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    record = add_seconds(study, cpu, wall)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    base_values = list(record.base_values or [])
    return AdaptResult(study.study_name, out, bank, skipped, soups, base_scores, base_values, len(done),
                       record.cpu_seconds, record.wall_seconds, totals)


def _check_out(out: Path, runs: list[Path], name: str) -> None:
    """`out` is new, empty, or an adapt run of this recipe (resumed), its study.db holding the
    study `name` and no other: a user's folder is never written into."""
    import optuna

    from soupkit.atomic import check_can_write
    from soupkit.search.study import close_storage, default_storage, open_storage

    for run in runs:
        if Path(out).resolve() == run.resolve():
            raise SoupkitError(f"--out {out} is one of the --bank runs; give adapt a folder of its own")
    check_can_write(out, "--out")
    entries = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    if entries and not (out / "study.db").is_file():
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise SoupkitError(f"--out {out} is not empty ({shown}) and not an adapt run; choose a new or empty folder")
    if (out / "study.db").is_file():
        storage = open_storage(default_storage(out))  # a reader: an empty or foreign file is refused as is
        try:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        finally:
            close_storage(storage)
        if names != [name]:
            raise SoupkitError(f"--out {out}: its study.db holds the studies {', '.join(names) or 'none'}, not "
                               f"'{name}'; give adapt a folder of its own")


def _mergeable(bank: list[BankMember], out: Path, recipe: Recipe, log) -> tuple[list[BankMember], dict[str, str]]:
    """The largest group of members that merge together; the others named with their reason."""
    from soupkit.merge.compat import largest_compatible_group
    from soupkit.model_folder import read_model_folder

    skipped: dict[str, str] = {}
    folders, staged = [], {}  # staged: a base saved to a scratch folder -> where it goes once the bank is good
    try:
        for member in bank:
            try:
                folders.append(_saved_base(member, out, recipe, staged) if member.path is None else member)
            except SoupkitError as exc:  # a base known by hub id, offline
                skipped[member.label] = str(exc)
        bank = folders
        kept, left_out = largest_compatible_group([read_model_folder(m.path) for m in bank])
        skipped.update({bank[i].label: reason for i, reason in left_out.items()})
        for scratch, target in staged.items():  # name a staged base by where it is kept, not its scratch folder
            skipped = {label: reason.replace(str(scratch), str(target)) for label, reason in skipped.items()}
        for label, reason in skipped.items():
            log(f"bank: skipped {label}: {reason}")
        bank = [bank[i] for i in kept]
        if bank and not any(m.kind == "base" for m in bank):
            log("bank: no base model merges with the rest: soups are not compared with a base")
        if len(bank) < 2:
            raise SoupkitError(f"adapt needs at least two mergeable checkpoints in the bank; "
                               f"{len(bank)} left ({len(skipped)} skipped as not mergeable)")
        bank = [_keep_base(m, staged) if m.path in staged else m for m in bank]
    finally:
        for scratch in staged:
            shutil.rmtree(scratch.parent, ignore_errors=True)
    return bank, skipped


def _saved_base(member: BankMember, out: Path, recipe: Recipe, staged: dict) -> BankMember:
    """A base known by reference, saved like the checkpoints so that it is a folder to merge: once,
    as `<out>/base-model` (`base-model-N` for the N-th of several bases); until the bank is known to
    be good it waits in a scratch folder (`staged`), so that a refused bank writes nothing."""
    import tempfile
    from dataclasses import replace

    from soupkit.base_model import pick_device
    from soupkit.soups.study_soup import saved_base

    path = out / member.label.replace(BASE_LABEL, "base-model", 1)
    if (path / "modules.json").is_file():
        return replace(member, path=path)
    scratch = saved_base(member.reference, Path(tempfile.mkdtemp(prefix="soupkit-base-")) / "model", recipe,
                         pick_device())
    staged[scratch] = path
    return replace(member, path=scratch)


def _keep_base(member: BankMember, staged: dict) -> BankMember:
    """Move a staged base into the run folder, whole: its files are moved (renamed where the scratch
    folder shares the file system, copied once where not) into atomic_dir's hidden folder, which is
    then renamed into place."""
    from dataclasses import replace

    target = staged[member.path]
    with atomic_dir(target) as tmp:
        for child in member.path.iterdir():
            shutil.move(str(child), str(tmp / child.name))
    return replace(member, path=target)


def _join_trunk_cache(merger, recipe: Recipe, log) -> None:
    """Proposals read the trunk cache when every bank member holds the same frozen bottom (top:<k>
    checkpoints of one base): soupkit.search.merge_proxy.join_bank_trunk, as a search by merging."""
    from soupkit.search.merge_proxy import join_bank_trunk

    join_bank_trunk(merger, _train_setting(recipe), recipe.base, log)


def _train_setting(recipe: Recipe) -> str:
    """`finetune.train` of the recipe for its base (finetune_by_base applied): which trunk cache a
    bank of its checkpoints may share."""
    from soupkit.models.fetch import same_model

    return recipe.for_base(same_model).finetune.train


def _open(recipe: Recipe, out: Path, bank: list[BankMember], overlaps: list[str]):
    """Create or resume the adapt study in `<out>/study.db`; a resumed one must hold the same
    recipe and bank."""
    import optuna

    from soupkit.search.run import directions, effective_recipe_json
    from soupkit.search.samplers import make_sampler
    from soupkit.search.study import (
        check_held_out_halves,
        check_same_recipe,
        default_storage,
        open_storage,
        open_study,
    )

    name = recipe.name + STUDY_SUFFIX
    bank_record = [{"label": m.label, "path": str(m.path.resolve()), "kind": m.kind, "run": m.run} for m in bank]
    if (out / "study.db").is_file():  # holds this study and no other (_check_out)
        storage = open_storage(default_storage(out))
        recorded = StudyRecord.of(optuna.load_study(study_name=name, storage=storage)).bank
        if recorded is not None and recorded != bank_record:
            raise SoupkitError(f"{out}: the bank differs from the one this adapt study was started with; "
                               "use another --out, or the original --bank runs to resume")
    out.mkdir(parents=True, exist_ok=True)
    sampler = make_sampler("gp", recipe.seed, 0)  # the startup count is set once the seeds are known
    study = open_study(default_storage(out), name, sampler, directions(recipe))
    check_same_recipe(study, effective_recipe_json(recipe))
    check_held_out_halves(study, recipe, record=True)  # selection halves only; the test halves stay unread
    record_stage(study, "adapt", bank_record, overlaps)
    return study


def _seed(study, bank: list[BankMember], singles: int, recipe_seed: int) -> None:
    """Queue, in a new study: the base alone, the uniform soup, the `singles` best checkpoints alone
    (by their objective in their own run). Then the GP starts after a few random draws."""
    from soupkit.search.samplers import make_sampler
    from soupkit.search.space import params_for_mixture

    labels = [m.label for m in bank]
    seeds = [({m.label: 1.0}, f"{m.kind} alone") for m in bank if m.kind == "base"][:1]
    seeds.append(({label: 1.0 for label in labels}, "uniform"))
    ranked = sorted((m for m in bank if m.kind != "base" and m.objective is not None), key=lambda m: -m.objective)
    seeds += [({m.label: 1.0}, f"{m.label} alone") for m in ranked[:singles]]
    if not study.get_trials(deepcopy=False):
        for weights, why in seeds:
            study.enqueue_trial(params_for_mixture(weights, labels), user_attrs=seeded_attrs(why))
    # a resumed study's draws continue instead of replaying the first run's
    study.sampler = make_sampler("gp", recipe_seed + len(study.get_trials(deepcopy=False)), len(seeds) + RANDOM_STARTUP)


def _propose(study, recipe, bank, merger, probes, settings, budget: int, log) -> dict[str, float]:
    """Run proposals until the study holds `budget` completed ones."""
    from soupkit.probes.score import objective_value, score_probes, study_values, told
    from soupkit.search.space import suggest_mixture

    labels = [m.label for m in bank]
    totals = {"merge": 0.0, "probe": 0.0}

    last = {}

    def objective(trial):
        last["number"] = trial.number
        weights = suggest_mixture(trial, labels)
        start = time.perf_counter()
        model = merger.merge([weights[label] for label in labels])
        merged = time.perf_counter()
        scores = score_probes(model, probes, settings)
        seconds = {"merge": round(merged - start, 3), "probe": round(time.perf_counter() - merged, 2)}
        value = objective_value(scores, recipe.objective.weights)
        record_proposal(trial, weights, scores, value, seconds)
        for key in totals:
            totals[key] += seconds[key]
        return told(study_values(scores, recipe.objective))

    while True:
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if len(done) >= budget:
            return totals
        study.optimize(objective, n_trials=1, gc_after_trial=False)
        trial = study.get_trials(deepcopy=False)[last["number"]]
        record = TrialRecord.of(trial)
        secs = record.seconds
        top = sorted(record.mixture.items(), key=lambda x: -x[1])[:3]
        seeded = f", {record.seeded}" if record.seeded else ""
        log(f"proposal {len(done) + 1}/{budget} (#{trial.number}{seeded}): {values_text(trial.values)}  "
            f"merge {secs.get('merge', 0):.2f}s probe {secs.get('probe', 0):.1f}s  "
            + ", ".join(f"{k} {v:.2f}" for k, v in top))


def _base_scores(study) -> dict[str, float]:
    """The base model's scores: those of the seed that holds the base alone."""
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE" and TrialRecord.of(t).seeded == "base alone":
            from soupkit.search.lifecycle import record_base_model

            record_base_model(study, StudyRecord.of(study).recipe(), TrialRecord.of(t).scores)
            return TrialRecord.of(t).scores
    return StudyRecord.of(study).base_scores


def _chosen(study, recipe: Recipe, keep: int) -> list[tuple[object, str]]:
    """(trial, role) of the soups to write: the best `keep` (weighted); for pareto, the shipped soup
    (best domain score with every general probe within GENERAL_TOLERANCE of the base) and the
    front, best domain first, up to `keep` in all."""
    from soupkit.soups.study_soup import GreedyCriterion

    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not recipe.objective.two_objectives:
        ranked = sorted(done, key=lambda t: (-t.values[0], t.number))
        return [(t, "best") for t in ranked[:keep]]
    bound = GreedyCriterion(recipe.objective, StudyRecord.of(study).base_scores, GENERAL_TOLERANCE)
    ship = max(done, key=lambda t: (bound.key(TrialRecord.of(t).scores), -t.number))
    front = sorted((t for t in study.best_trials if t.number != ship.number), key=lambda t: (-t.values[0], t.number))
    return [(ship, "ship")] + [(t, "front") for t in front[: keep - 1]]


def _write_soups(study, recipe, bank, out, probes, settings, device, keep, command, log) -> list[AdaptSoup]:
    from soupkit.base_model import load_model
    from soupkit.models.trunk import join_trunk_cache
    from soupkit.probes.score import objective_value, score_probes, study_values
    from soupkit.soups.study_soup import merge_folders

    paths = {m.label: m.path for m in bank}
    soups = []
    for trial, role in _chosen(study, recipe, keep):
        weights = {k: v for k, v in TrialRecord.of(trial).mixture.items() if v > 0}
        name = f"adapt-{trial.number:04d}"
        path = out / "soups" / name
        merge_folders([paths[label] for label in weights], path, "weighted", weights=list(weights.values()),
                      command=command or None)
        # scored again from disk: the recorded scores are those of the folder written
        model = load_model(str(path), device)
        join_trunk_cache(model, _train_setting(recipe), recipe.base)
        scores = score_probes(model, probes, settings)
        value, values = objective_value(scores, recipe.objective.weights), study_values(scores, recipe.objective)
        log(f"soup {name} ({role}, trial {trial.number}): {values_text(values)}; written to {path}")
        soups.append(AdaptSoup(name, trial.number, role, weights, path, scores, value, values))
        record_soup(study, name, SoupRecord("adapt", list(weights), scores, value, values, str(path.resolve()),
                                            weights=weights, role=role, trial=trial.number))
    return soups
