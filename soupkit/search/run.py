"""`soupkit search`: build the families once, score the base model once, then run trials until
the study holds `budget` completed trials (resuming whatever an earlier run left).

Many workers may run this on one storage (PostgreSQL for several machines): the budget counts the
completed trials of all of them, and soupkit.search.workers keeps them from training the same
mixture or running past the budget. Everything that can fail on the user's input (recipe, base
model, storage URL, data sources) is checked before anything is written.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from soupkit.atomic import atomic_write_text, check_can_write
from soupkit.config import NOT_TRIAL_SECTIONS, Recipe, seed_mixture_of
from soupkit.errors import Interrupted, SoupkitError
from soupkit.pause import pause_for_test
from soupkit.search.checkpoints import keep_best_checkpoints, remove_partial_checkpoints
from soupkit.search.space import params_for_mixture
from soupkit.search.study import (
    check_held_out_halves,
    check_same_recipe,
    default_storage,
    open_storage,
    open_study,
    recover_dead_trials,
    redact,
    trial_counts,
)
from soupkit.search.trial import TrialContext, run_trial
from soupkit.search.workers import sampler_seed

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
) -> SearchResult:
    """Run trials until the study holds `recipe.search.budget` completed ones. `checkpoints` is the
    folder for trial models (default <out>/trials); with workers on several machines, a folder
    all of them reach at the same path.

    Ctrl-C raises `Interrupted` (exit 130) saying what is saved and how to resume; stopped
    before its first trial, the search removes the run folder it created."""
    progress = _Progress()
    try:
        return _run_search(recipe, out, storage, recipe_path, command, log, show_progress, max_failures,
                           checkpoints, trust_remote_code, progress)
    except KeyboardInterrupt:
        _remove_new_run_folder(out, progress)
        raise Interrupted(_interrupted_message(out, storage, checkpoints, command, progress)) from None
    except BaseException:
        _remove_new_run_folder(out, progress)
        raise


def _run_search(recipe, out, storage, recipe_path, command, log, show_progress, max_failures, checkpoints,
                trust_remote_code, progress: _Progress) -> SearchResult:
    import optuna

    from soupkit.base_model import load_model, pick_device, resolve_base, use_bf16
    from soupkit.data.load import check_recipe, load_recipe_families
    from soupkit.probes.score import objective_value, score_probes, study_values
    from soupkit.search.samplers import make_sampler

    if not show_progress:  # --quiet: no bars from the libraries either (loading, saving shards)
        _silence_library_progress_bars()
    # checks of the user's input first: a mistake leaves no run folder or study behind
    check_recipe(recipe, recipe_path)
    check_run_folder(out, recipe)
    if checkpoints:
        check_can_write(Path(checkpoints), "--checkpoints folder")
    seed_mixture = seed_mixture_of(recipe, recipe_path)
    resolve_base(recipe.base)  # the folder exists and holds readable safetensors
    shared_store = open_storage(storage) if storage else None  # an unreachable server fails here, fast
    device = pick_device()
    bf16 = use_bf16(device, recipe.finetune.bf16)
    model = load_model(recipe.base, device, trust_remote_code=trust_remote_code)
    t0 = time.perf_counter()
    base_dir = recipe_path.parent if recipe_path else None
    families, probes = load_recipe_families(recipe, base_dir, log=log)
    data_seconds = time.perf_counter() - t0

    pause_for_test("run_folder")
    progress.created_folder = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or default_storage(out)
    checkpoints = Path(checkpoints) if checkpoints else out / "trials"
    spec = recipe.search
    study = progress.study = open_study(shared_store or storage, recipe.name, None, directions(recipe))
    trials = study.get_trials(deepcopy=False)
    n_existing = len(trials)
    # a worker that may not be alone mixes its identity into the seed (distinct draws); a lone
    # worker's seed is offset by the study's size so a resumed stream does not replay its draws
    shared = storage != default_storage(out) or any(t.state.name == "RUNNING" for t in trials)
    startup = spec.n_startup_trials + (1 if seed_mixture else 0)
    study.sampler = make_sampler(spec.sampler, sampler_seed(recipe.seed, n_existing, shared), startup)
    check_same_recipe(study, effective_recipe_json(recipe))
    check_held_out_halves(study, recipe, record=True)
    atomic_write_text(out / "recipe.yaml", RUN_MARKER + yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))

    names = list(families)
    if n_existing == 0 and seed_mixture is not None:
        params = params_for_mixture(seed_mixture.weights, names)
        study.enqueue_trial(params, user_attrs={"seeded": "recipe"}, skip_if_exists=True)
    requeued = recover_dead_trials(study)
    if requeued:
        which = ", ".join(f"#{n}" for n in requeued)
        log(f"re-queued {len(requeued)} interrupted trial{'s' if len(requeued) > 1 else ''} ({which}): "
            f"{'its mixture runs' if len(requeued) == 1 else 'their mixtures run'} again")
    leftovers = remove_partial_checkpoints(study, checkpoints)
    if leftovers:
        log(f"removed partial checkpoints of interrupted trials: {', '.join(leftovers)}")
    if spec.keep_checkpoints:
        keep_best_checkpoints(study, spec.keep_checkpoints, log)

    base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ctx = TrialContext(recipe, families, probes, model, base_state, out, bf16, command, checkpoints=checkpoints)

    base_scores = study.user_attrs.get("base_scores")
    if base_scores is None or set(base_scores) != set(probes):
        start = time.perf_counter()
        base_scores = score_probes(model, probes, ctx.probe_settings)
        study.set_user_attr("base_scores", base_scores)
        study.set_user_attr("base_model", recipe.base)
        log(f"base model scored in {time.perf_counter() - start:.1f}s")
    base_value = objective_value(base_scores, recipe.objective.weights)
    study.set_user_attr("base_objective", base_value)
    study.set_user_attr("base_values", study_values(base_scores, recipe.objective))
    study.set_user_attr("data_seconds", round(data_seconds, 2))
    log(f"base model objective {base_value:.4f}  " + "  ".join(f"{k} {v:.3f}" for k, v in base_scores.items()))
    pause_for_test("first_trial")

    failures = 0
    while True:
        counts = trial_counts(study)
        if counts["COMPLETE"] >= spec.budget:
            break
        if counts["COMPLETE"] + counts["RUNNING"] >= spec.budget:
            # other workers hold the remaining trials; wait for them, failing any that went stale
            time.sleep(WAIT_SECONDS)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            recover_dead_trials(study)
            continue
        n = counts["COMPLETE"] + 1
        bar = _progress(show_progress, recipe.finetune.steps, f"trial {n}/{spec.budget}")
        ctx.on_step = (lambda step, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}"))) if bar else None
        before = time.perf_counter()
        ctx.last_number = None
        progress.started = True
        study.optimize(lambda t: run_trial(t, ctx), n_trials=1, catch=(Exception,), gc_after_trial=False)
        if bar:
            bar.close()
        if ctx.last_number is None:
            continue
        last = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, ctx.last_number))  # this worker's trial; others may have started later ones
        if last.state.name == "PRUNED":
            log(f"trial #{last.number} skipped: {last.user_attrs.get('skipped', 'pruned')}")
        elif last.state.name == "COMPLETE":
            failures = 0
            secs = last.user_attrs.get("seconds", {})
            log(
                f"trial {n}/{spec.budget} (#{last.number}) {_progress_line(study, last, base_value)}  "
                f"finetune {secs.get('finetune', 0):.0f}s probe {secs.get('probe', 0):.0f}s "
                f"total {time.perf_counter() - before:.0f}s"
            )
            if spec.keep_checkpoints:
                keep_best_checkpoints(study, spec.keep_checkpoints, log)
        else:
            failures += 1
            log(f"trial #{last.number} failed: {last.user_attrs.get('error', 'unknown error')}")
            if failures >= max_failures:
                raise SoupkitError(
                    f"{failures} trials failed in a row; last error: {last.user_attrs.get('error', '?')}"
                )

    completed = trial_counts(study)["COMPLETE"]
    best_value = best_objective(study) if completed else None
    return SearchResult(recipe.name, storage, out, best_value, base_value, completed)


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
    retried = {t.user_attrs.get("retry_of") for t in trials}
    cut = [t.number for t in trials if t.user_attrs.get("error") == "interrupted" and t.number not in retried]
    rerun = f"; trial #{cut[-1]} was cut short and runs again with its mixture" if cut else ""
    return f"{done} completed trial{'s' if done != 1 else ''} saved in {where} (models in {models}){rerun}{resume}"


def directions(recipe: Recipe) -> list[str]:
    return ["maximize", "maximize"] if recipe.objective.mode == "pareto" else ["maximize"]


def best_objective(study) -> float:
    """The best scalar objective (the weighted mean over all probes) of any completed trial."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return max(t.user_attrs.get("objective", t.values[0]) for t in done)


def _progress_line(study, last, base_value: float) -> str:
    if len(study.directions) == 1:
        return f"objective {last.value:.4f}  best {best_objective(study):.4f}  base {base_value:.4f}"
    domain, general = last.values
    base_domain, base_general = study.user_attrs.get("base_values", [float("nan")] * 2)
    return (f"domain {domain:.4f} general {general:.4f} (base {base_domain:.4f} / {base_general:.4f})  "
            f"front {len(study.best_trials)} trials")


def _silence_library_progress_bars() -> None:
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)
