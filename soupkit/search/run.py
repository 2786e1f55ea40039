"""`soupkit search`: build the families once, score the base model once, then run trials until
the study holds `budget` trials, completed or stopped by the pruner (resuming whatever an earlier
run left).

Many workers may run this on one storage (PostgreSQL for several machines): the budget counts the
trials of all of them, and soupkit.search.workers keeps them from training the same mixture or
running past the budget. Everything that can fail on the user's input (recipe, base
model, storage URL, data sources) is checked before anything is written.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from soupkit.atomic import atomic_write_text, check_can_write
from soupkit.config import NOT_TRIAL_SECTIONS, Mixture, Recipe, seed_mixture_of
from soupkit.errors import Interrupted, SoupkitError
from soupkit.pause import pause_for_test
from soupkit.search import lifecycle
from soupkit.search.checkpoints import (
    OWNER_FILE,
    check_checkpoint_folder,
    claim_checkpoint_folder,
    keep_best_checkpoints,
)
from soupkit.search.heartbeat import fail_stale_trials
from soupkit.search.space import params_for_mixture
from soupkit.search.study import (
    check_held_out_halves,
    check_same_recipe,
    close_storage,
    default_storage,
    open_storage,
    open_study,
    recover_dead_trials,
    redact,
    trial_counts,
)
from soupkit.search.trial import TrialContext, merge_trial, search_trial
from soupkit.search.workers import sampler_seed
from soupkit.study_record import (
    INTERRUPTED,
    StudyRecord,
    TrialRecord,
    metric_names,
    objective_of,
    seeded_attrs,
    stopped_by_pruner,
    two_objectives,
    values_text,
)

MAX_CONSECUTIVE_FAILURES = 5
WAIT_SECONDS = 2  # how often a worker whose budget is held by others looks again
# the first line of the recipe.yaml a search writes: what makes a folder a soupkit run folder
RUN_MARKER = "# soupkit run folder: the resolved recipe of this search (written by soupkit search)\n"
# what a search writes into a new run folder before its first trial (removed again if it stops there)
FIRST_FILES = frozenset({"recipe.yaml", "study.db", "study.db-journal", "study.db-wal", "study.db-shm"})


@dataclass
class SearchResult:
    study_name: str
    storage: str
    out: Path
    best_value: float | None
    base_value: float
    completed: int
    pruned: int = 0  # trials the pruner stopped at a milestone (the budget counts them too)


def effective_recipe_json(recipe: Recipe) -> str:
    """The parts of a recipe that change what a trial produces (not the budget or sampler)."""
    data = recipe.model_dump(mode="json", exclude=set(NOT_TRIAL_SECTIONS))
    return json.dumps(data, sort_keys=True)


@dataclass
class _Progress:
    """How far a search got, for cleaning up after a failure and for the Ctrl-C message."""

    created_folder: bool = False
    started: bool = False  # a trial began
    study: object = None


def run_search(
    recipe: Recipe,
    out: Path,
    storage: str | None = None,
    recipe_path: Path | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    max_failures: int = MAX_CONSECUTIVE_FAILURES,
    checkpoints: Path | None = None,
    trust_remote_code: bool = False,
    by_merging: str | None = None,
) -> SearchResult:
    """Run trials until the study holds `recipe.search.budget` trials, completed or stopped by the
    pruner (soupkit.search.study.trial_counts). `checkpoints` is the folder for trial models
    (default <out>/trials); with workers on several machines, one all of them reach at one path.

    Ctrl-C raises `Interrupted` (exit 130) saying what is saved and how to resume; stopped
    before its first trial, the search removes the run folder it created. `by_merging`: the name of
    an expert bank of the run ("" for the last made): each trial merges the experts with its
    mixture's weights instead of training (soupkit.search.merge_proxy)."""
    from soupkit.models.fetch import same_model

    recipe = recipe.for_base(same_model)  # the command line applied it already; a Python caller may not have
    if by_merging is not None and storage is not None:  # before check_inputs opens (creates) the storage
        raise SoupkitError("--by-merging merges the experts in the run folder's study.db (`soupkit experts --out`); "
                           "it runs without --storage")
    progress = _Progress()
    try:
        return _search(recipe, out, storage, recipe_path, command, log, show_progress, max_failures,
                       checkpoints, trust_remote_code, progress, by_merging)
    except KeyboardInterrupt:
        _remove_new_run_folder(out, progress)
        raise Interrupted(_interrupted_message(out, storage, checkpoints, command, progress)) from None
    except BaseException:
        _remove_new_run_folder(out, progress)
        raise


def _search(recipe, out, storage, recipe_path, command, log, show_progress, max_failures, checkpoints,
            trust_remote_code, progress: _Progress, by_merging: str | None = None) -> SearchResult:
    if not show_progress:  # --quiet: no bars from the libraries either (loading, saving shards)
        _silence_library_progress_bars()
    inputs = check_inputs(recipe, recipe_path, storage, out, checkpoints)
    opened = [inputs.store] if inputs.store is not None else []  # closed at the end, whatever happens
    try:
        bank = _check_search_mode(recipe, inputs, out, storage, by_merging, opened)
        ctx = prepare_trials(recipe, recipe_path, out, command, checkpoints, trust_remote_code, log)
        proxy = None
        if bank is not None:
            from soupkit.search.merge_proxy import MergeProxy

            proxy = MergeProxy(bank, str(ctx.model.device), log)
        search = open_search(recipe, inputs, out, storage, ctx, log, progress, trains=proxy is None)
        opened.append(search.store)
        if proxy is not None:
            from soupkit.study_record import record_merge_proxy

            record_merge_proxy(search.study, bank.name)
        base_value = score_base(search, ctx, log)
        pause_for_test("first_trial")
        run_worker(search, ctx, base_value, max_failures, show_progress, log, progress, proxy)
        counts = trial_counts(search.study)
        return SearchResult(recipe.name, search.url, out, best_objective(search.study), base_value,
                            counts["COMPLETE"], counts["STOPPED"])
    finally:
        for store in opened:
            close_storage(store)


def _check_search_mode(recipe: Recipe, inputs, out: Path, storage: str | None, by_merging: str | None,
                       opened: list):
    """The expert bank of a search by merging (None for a trained search), checked before anything
    is written: the run holds it, every expert is trained from the recipe's base, and the study is
    not one searched the other way."""
    from soupkit.search.merge_proxy import check_search_mode, load_expert_bank

    if storage is None and not (out / "study.db").is_file():
        if by_merging is None:
            return None
        raise SoupkitError(f"--by-merging: {out} holds no experts; make them first with "
                           f"`soupkit experts --out {out}`")
    store = inputs.store
    if store is None:
        store = open_storage(storage or default_storage(out))
        opened.append(store)
    bank = None
    if by_merging is not None:
        bank = load_expert_bank(store, recipe.name, recipe.family_names(), by_merging or None, str(out))
        if bank.base != recipe.base:
            raise SoupkitError(f"expert bank '{bank.name}' was trained from {bank.base}, but the search's base is "
                               f"{recipe.base}; merge experts of the base you search")
    check_search_mode(store, recipe.name, bank.name if bank else None)
    return bank


@dataclass
class CheckedInputs:
    seed_mixture: Mixture | None
    store: object | None  # the storage of --storage, opened (an unreachable server fails fast)


def check_inputs(recipe: Recipe, recipe_path: Path | None, storage: str | None, out: Path,
                 checkpoints: Path | None = None) -> CheckedInputs:
    """Everything that can fail on the user's input, before anything is written or loaded."""
    from soupkit.base_model import resolve_base
    from soupkit.data.load import check_recipe
    from soupkit.search.samplers import check_sampler
    from soupkit.train.finetune import check_train_setting

    check_recipe(recipe, recipe_path)
    check_run_folder(out, recipe)
    if checkpoints:
        check_can_write(Path(checkpoints), "--checkpoints folder")
    seed_mixture = seed_mixture_of(recipe, recipe_path)
    check_sampler(recipe.search.sampler)
    check_train_setting(recipe.finetune, resolve_base(recipe.base))  # the folder exists and holds readable safetensors
    store = open_storage(storage, create=True) if storage else None
    root = Path(checkpoints) if checkpoints else out / "trials"
    inside_run = out.resolve() in root.resolve().parents
    study, opened = _existing_study(store, out, recipe.name)
    try:
        check_checkpoint_folder(root, study, storage_label(storage, out), inside_run)
    finally:
        if opened is not None:
            close_storage(opened)
    return CheckedInputs(seed_mixture, store)


def storage_label(storage: str | None, out: Path) -> str:
    """Where a search's study lives, as a checkpoints folder's owner file names it."""
    return redact(storage) if storage else str((out / "study.db").resolve())


def _existing_study(store, out: Path, name: str):
    """The study `name` as it is before this search writes anything (None: there is none yet),
    and the storage opened for it here (to close); the run folder's study.db is read, not created."""
    import optuna

    opened = None
    if store is None:
        if not (out / "study.db").is_file():
            return None, None
        store = opened = open_storage(default_storage(out))
    names = {s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)}
    return (optuna.load_study(study_name=name, storage=store) if name in names else None), opened


def prepare_trials(recipe: Recipe, recipe_path: Path | None, out: Path, command: str, checkpoints: Path | None,
                   trust_remote_code: bool, log: Callable[[str], None]) -> TrialContext:
    """Load the base model and build the families once: what every trial shares."""
    return lifecycle.load_context(recipe, out, command, recipe_dir=recipe_path.parent if recipe_path else None,
                                  trust_remote_code=trust_remote_code, log=log, sampler=recipe.search.sampler,
                                  checkpoints=Path(checkpoints) if checkpoints else None)


@dataclass
class OpenSearch:
    study: object  # optuna.Study
    store: object  # the optuna storage it lives in (ours: opened by open_storage)
    url: str


def open_search(recipe: Recipe, inputs: CheckedInputs, out: Path, storage: str | None, ctx: TrialContext,
                log: Callable[[str], None], progress: _Progress | None = None, trains: bool = True) -> OpenSearch:
    """Create or resume the study; seed it with the recipe's mixture; tidy up after dead workers.
    `trains`: its trials write checkpoints (a search by merging writes none, so claims no folder)."""
    import optuna

    from soupkit.search.samplers import make_pruner, make_sampler

    progress = progress or _Progress()
    pause_for_test("run_folder")
    progress.created_folder = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(out)
    store = inputs.store or open_storage(url, create=True)
    spec = recipe.search
    study = progress.study = open_study(store, recipe.name, None, directions(recipe))
    trials = study.get_trials(deepcopy=False)
    n_existing = len(trials)
    # a worker that may not be alone mixes its identity into the seed (distinct draws); a lone
    # worker's seed is offset by the study's size so a resumed stream does not replay its draws
    shared = url != default_storage(out) or any(t.state.name == "RUNNING" for t in trials)
    startup = spec.n_startup_trials + (1 if inputs.seed_mixture else 0)
    study.sampler = make_sampler(spec.sampler, sampler_seed(recipe.seed, n_existing, shared), startup)
    study.pruner = make_pruner(spec.pruner, recipe.milestone_steps(), recipe.finetune.steps)
    check_same_recipe(study, effective_recipe_json(recipe))
    scheme = check_held_out_halves(study, recipe, record=True)
    if scheme != ctx.probe_split:  # an older study: its trained families are scored on their whole probes
        from soupkit.data.load import probes_for_scheme

        ctx.probes = probes_for_scheme(dict(ctx.families), dict(ctx.probes), recipe.seed, scheme)
        ctx.probe_split = scheme
    with warnings.catch_warnings():  # experimental since Optuna 3.2, and what the dashboard shows
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names(recipe.objective.two_objectives))
    write_run_recipe(out, recipe)

    if n_existing == 0 and inputs.seed_mixture is not None:
        params = params_for_mixture(inputs.seed_mixture.weights, list(ctx.families))
        study.enqueue_trial(params, user_attrs=seeded_attrs(), skip_if_exists=True)
    if trains:
        claim_checkpoint_folder(ctx.checkpoint_root, study, storage_label(storage, out))  # checked by check_inputs
    requeued, removed = lifecycle.recover(study, store, ctx.checkpoint_root)
    if requeued:
        which = ", ".join(f"#{n}" for n in requeued)
        log(f"re-queued {len(requeued)} interrupted trial{'s' if len(requeued) > 1 else ''} ({which}): "
            f"{'its mixture runs' if len(requeued) == 1 else 'their mixtures run'} again")
    if removed:
        log(f"removed partial checkpoints of interrupted trials: {', '.join(removed)}")
    if spec.keep_checkpoints:
        keep_best_checkpoints(study, spec.keep_checkpoints, ctx.checkpoint_root, log)
    return OpenSearch(study, store, url)


def write_run_recipe(out: Path, recipe: Recipe) -> None:
    """The run folder's recipe.yaml (with RUN_MARKER): what makes it a run folder of this recipe."""
    atomic_write_text(out / "recipe.yaml", RUN_MARKER + yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))


def score_base(search: OpenSearch, ctx: TrialContext, log: Callable[[str], None]) -> float:
    """The base model's probe scores, once per study (again if the probes changed); its objective."""
    recipe, study = ctx.recipe, search.study
    scores = lifecycle.base_scores(StudyRecord.of(study).base_scores, ctx.probes, lambda: ctx.model,
                                   ctx.probe_settings, log)
    base_value = lifecycle.record_base_model(study, recipe, scores, base_model=recipe.base,
                                             data_seconds=ctx.data_seconds)
    log(f"base model objective {base_value:.4f}  " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return base_value


def run_worker(search: OpenSearch, ctx: TrialContext, base_value: float, max_failures: int, show_progress: bool,
               log: Callable[[str], None], progress: _Progress | None = None, proxy=None) -> None:
    """Ask for trials and run them until the study holds the budget of trials (of any worker),
    completed or stopped by the pruner; stop after `max_failures` failures in a row. With a
    `proxy` (soupkit.search.merge_proxy.MergeProxy) each trial is a merge of experts, not a finetune."""
    import optuna

    study, spec = search.study, ctx.recipe.search
    failures = 0
    while True:
        counts = trial_counts(study)
        if counts["DONE"] >= spec.budget:
            return
        if counts["DONE"] + counts["RUNNING"] >= spec.budget:
            # other workers hold the remaining trials; wait for them, failing any that went stale
            time.sleep(WAIT_SECONDS)
            fail_stale_trials(study)
            recover_dead_trials(study, search.store)
            continue
        n = counts["DONE"] + 1
        before = time.perf_counter()
        if progress is not None:
            progress.started = True
        fail_stale_trials(study)
        body = (lambda t: search_trial(t, ctx)) if proxy is None else (lambda t: merge_trial(t, ctx, proxy))
        bar = show_progress and proxy is None
        with lifecycle.progress_bar(bar, ctx.finetune.steps, f"trial {n}/{spec.budget}") as ctx.on_step:
            # a queued mixture first, with a heartbeat; the finished trial (frozen) comes back
            last = lifecycle.run_and_tell(study, lifecycle.ask(study), ctx, body, search.store)
        record = TrialRecord.of(last)
        if stopped_by_pruner(last):
            failures = 0
            log(f"trial {n}/{spec.budget} (#{last.number}) {record.pruned()}  {_best_so_far(study, base_value)}")
        elif last.state == optuna.trial.TrialState.PRUNED:
            log(f"trial #{last.number} skipped: {record.skipped or 'pruned'}")
        elif last.state == optuna.trial.TrialState.COMPLETE:
            failures = 0
            secs = record.seconds
            work = "merge" if proxy is not None else "finetune"
            log(
                f"trial {n}/{spec.budget} (#{last.number}) {_progress_line(study, last, base_value)}  "
                f"{work} {secs.get(work, 0):.0f}s probe {secs.get('probe', 0):.0f}s "
                f"total {time.perf_counter() - before:.0f}s"
            )
            if spec.keep_checkpoints:
                keep_best_checkpoints(study, spec.keep_checkpoints, ctx.checkpoint_root, log)
        else:
            failures += 1
            log(f"trial #{last.number} failed: {record.error or 'unknown error'}")
            if failures >= max_failures:
                raise SoupkitError(f"{failures} trials failed in a row; last error: {record.error or '?'}")


def check_run_folder(out: Path, recipe: Recipe) -> None:
    """A run folder is new, empty, or a soupkit run of the same recipe; anything else is refused
    before anything is written (its files, a user's recipe.yaml above all, are never replaced)."""
    check_can_write(out, "run folder")
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir() if not p.name.startswith(".tmp-"))
    if not entries:
        return
    saved = out / "recipe.yaml"
    old = _run_recipe(out) if saved.is_file() else None
    if old is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise SoupkitError(f"run folder {out} is not empty ({shown}) and not a soupkit run (no recipe.yaml written "
                           "by soupkit search); choose a new or empty --out folder")
    old_json, new_json = json.loads(effective_recipe_json(old)), json.loads(effective_recipe_json(recipe))
    if old_json != new_json:
        diff = next((k for k in sorted(set(old_json) | set(new_json)) if old_json.get(k) != new_json.get(k)), "?")
        raise SoupkitError(f"run folder {out} was started with a different recipe (field '{diff}' differs); "
                           "use another --out, or the original settings to resume")


def _run_recipe(out: Path) -> Recipe | None:
    """The recipe of a soupkit run folder: its recipe.yaml as a search wrote it (with the marker;
    or, from soupkit versions before the marker, a valid recipe beside a study or trials)."""
    text = (out / "recipe.yaml").read_text(errors="replace")
    legacy = (out / "study.db").is_file() or (out / "trials").is_dir()
    if not (text.startswith(RUN_MARKER) or legacy):
        return None
    try:
        return Recipe.model_validate(yaml.safe_load(text))
    except Exception:  # a run folder's recipe.yaml is always a valid recipe: this one is not soupkit's
        return None


def _remove_new_run_folder(out: Path, progress: _Progress) -> None:
    """A search stopped before its first trial leaves no run folder it created (only if nothing
    but its own first files, or another worker's, are in it)."""
    import shutil

    if not progress.created_folder or progress.started or not out.is_dir():
        return
    names = {p.name for p in out.iterdir() if not p.name.startswith(".tmp-recipe.yaml-")}
    trials = out / "trials"  # made by this search for its owner file only
    if trials.is_dir() and {p.name for p in trials.iterdir()} <= {OWNER_FILE}:
        names.discard("trials")
    if names <= FIRST_FILES:
        shutil.rmtree(out, ignore_errors=True)


def _interrupted_message(out: Path, storage: str | None, checkpoints: Path | None, command: str,
                         progress: _Progress) -> str:
    resume = f"; resume with: {command}" if command else ""
    if not progress.started:
        if progress.study is not None and not progress.created_folder:
            return f"before the first trial started; the run in {out} is as it was{resume}"
        return "before the first trial started; nothing was written"
    where = redact(storage) if storage else out / "study.db"
    models = Path(checkpoints) if checkpoints else out / "trials"
    try:
        trials = progress.study.get_trials(deepcopy=False)
    except Exception:  # the storage went away with the interrupt: say where it is all the same
        return f"the study in {where} holds every trial completed so far (models in {models}){resume}"
    done = sum(t.state.name == "COMPLETE" for t in trials)
    records = [TrialRecord.of(t) for t in trials]
    retried = {r.retry_of for r in records}
    cut = [r.number for r in records if r.error == INTERRUPTED and r.number not in retried]
    rerun = f"; trial #{cut[-1]} was cut short and runs again with its mixture" if cut else ""
    return f"{done} completed trial{'s' if done != 1 else ''} saved in {where} (models in {models}){rerun}{resume}"


def directions(recipe: Recipe) -> list[str]:
    """One "maximize" per objective value (metric_names names them)."""
    return ["maximize"] * len(metric_names(recipe.objective.two_objectives))


def best_objective(study) -> float | None:
    """The best scalar objective (the weighted mean over all probes) of any completed trial; None
    before the first. A trial the pruner stopped has only a milestone's objective: it is not one."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return max((objective_of(t) for t in done), default=None)


def _best_so_far(study, base_value: float) -> str:
    best = best_objective(study)
    return f"(best {best:.4f}, base {base_value:.4f})" if best is not None else f"(base {base_value:.4f})"


def _progress_line(study, last, base_value: float) -> str:
    if not two_objectives(study):
        return f"objective {last.value:.4f}  best {best_objective(study):.4f}  base {base_value:.4f}"
    base_domain, base_general = StudyRecord.of(study).base_values or [float("nan")] * 2
    return (f"{values_text(last.values)} (base {base_domain:.4f} / {base_general:.4f})  "
            f"front {len(study.best_trials)} trials")


def _silence_library_progress_bars() -> None:
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()

