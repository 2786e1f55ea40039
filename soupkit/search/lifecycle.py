"""The one lifecycle of every trained candidate (a search trial, an ingredient, a later stage's):
a stage sets a `TrainedStage` and picks mixtures; the context, finetune, probes, records, failures,
crash recovery, progress bar and base scores are here once. It lives in search/ because a
candidate is an Optuna trial: asked, recorded and told (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from optuna import TrialPruned
from optuna.trial import TrialState

from soupkit.atomic import atomic_write_text
from soupkit.config import FinetuneSpec, Mixture, Recipe
from soupkit.data.family import TaskFamily
from soupkit.data.halves import EVERY_PROBE_HALVED
from soupkit.errors import SoupkitError
from soupkit.pause import pause_for_test
from soupkit.probes.score import (
    ProbeSettings,
    objective_value,
    score_probes,
    study_values,
)
from soupkit.search.checkpoints import checkpoint_dir, remove_partial_checkpoints
from soupkit.search.heartbeat import heartbeat
from soupkit.search.study import recover_dead_trials, worker_id
from soupkit.study_record import (
    INTERRUPTED,
    TrialRecord,
    ingredient_key_of,
    record_base,
    record_checkpoint,
    record_error,
    record_mixture,
    record_result,
    record_worker,
)
from soupkit.train.finetune import finetune_on_mixture


@dataclass(frozen=True)
class TrainedStage:
    """A kind of candidate: its folder and record name (`trial-0007/soupkit_trial.yaml`), finetune
    settings (None: the recipe's), and whether a failure stops the stage or is left recorded."""

    kind: str = "trial"
    finetune: FinetuneSpec | None = None
    raise_failures: bool = False


@dataclass
class TrialContext:
    """What every candidate of one stage shares: the loaded data, the model and its base weights."""

    recipe: Recipe
    families: Mapping[str, TaskFamily]  # trained on: the mixture's coordinates
    probes: Mapping[str, TaskFamily]  # scored: the families above plus probe-only ones
    model: object
    base_state: dict  # train.finetune.base_weights: what a finetune can change, copied once
    out: Path
    bf16: bool
    command: str
    on_step: Callable[[int, float], None] | None = None
    checkpoints: Path | None = None  # where candidate folders go (default <out>/trials): shared by all workers
    data_seconds: float = 0.0  # time it took to build the families
    stage: TrainedStage = field(default_factory=TrainedStage)
    sampler: str | None = None  # recorded with the worker (search trials: the sampler that proposed)
    probe_split: str = EVERY_PROBE_HALVED  # what `probes` are: soupkit.data.halves.SPLIT_SCHEMES

    @property
    def checkpoint_root(self) -> Path:
        return self.checkpoints or self.out / "trials"

    @property
    def finetune(self) -> FinetuneSpec:
        return self.stage.finetune or self.recipe.finetune

    @property
    def probe_settings(self) -> ProbeSettings:
        return ProbeSettings.from_recipe(self.recipe, self.bf16)

    @functools.cached_property
    def milestone_probes(self) -> Mapping[str, TaskFamily]:
        """The probes a milestone scores: `search.milestone_fraction` of each probe's items, drawn
        with the recipe's seed, so every trial's milestones score the same items."""
        fraction = self.recipe.search.milestone_fraction
        if fraction >= 1:
            return self.probes
        return {name: dataclasses.replace(fam, probe=fam.probe.subset(fraction, self.recipe.seed))
                if fam.probe is not None else fam for name, fam in self.probes.items()}

    def folder(self, number: int) -> Path:
        return checkpoint_dir(self.checkpoint_root, number, self.stage.kind)

    def reset_model(self) -> None:
        self.model.load_state_dict(self.base_state)


def load_context(recipe: Recipe, out: Path, command: str, stage: TrainedStage | None = None, base: str | None = None,
                 recipe_dir: Path | None = None, trust_remote_code: bool = False, log: Callable = print,
                 scheme: str = EVERY_PROBE_HALVED, **settings) -> TrialContext:
    """Load the base model (`base`: the recipe's) and the families once, probes split as `scheme`
    (soupkit.data.halves.SPLIT_SCHEMES: an older study's); `settings`: other fields."""
    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.data.load import load_recipe_families
    from soupkit.train.finetune import base_weights

    device, stage = pick_device(), stage or TrainedStage()
    finetune = stage.finetune or recipe.finetune
    model = load_model(base or recipe.base, device, trust_remote_code=trust_remote_code)
    start = time.perf_counter()
    families, probes = load_recipe_families(recipe, recipe_dir, log=log, scheme=scheme)
    return TrialContext(recipe, families, probes, model, base_weights(model, finetune), out,
                        use_bf16(device, finetune.bf16), command, data_seconds=time.perf_counter() - start,
                        stage=stage, probe_split=scheme, **settings)


def train_and_score(trial, ctx: TrialContext, weights: Mapping[str, float], record: Mapping[str, object] | None = None,
                    on_step: Callable[[int, float], None] | None = None,
                    finetuned: Callable[[Path], None] | None = None,
                    uncounted_seconds: Callable[[], dict[str, float]] | None = None) -> list[float]:
    """Finetune on `weights`, score, record on the trial and in the folder; return the study's values.
    `record`: the stage's fields in the record file; `finetuned(folder)`: a check before scoring;
    `uncounted_seconds()`: work inside the finetune's clock counted apart ({"milestones": s})."""
    kind, recipe, finetune = ctx.stage.kind, ctx.recipe, ctx.finetune
    rounded = {k: round(v, 6) for k, v in weights.items()}
    mixture = Mixture(name=f"{recipe.name}-{kind}-{trial.number:04d}", weights=rounded)
    record_mixture(trial, mixture.weights)
    folder = ctx.folder(trial.number)
    if folder.exists():  # a candidate's number is new: whatever holds its name, this study did not write
        raise SoupkitError(f"{folder} exists and no {kind} of this study wrote it; soupkit does not replace it")
    ctx.reset_model()
    result = finetune_on_mixture(ctx.model, ctx.families, weights, finetune, folder, recipe.seed, ctx.bf16,
                                 {"mixture.yaml": mixture.to_yaml()}, on_step or ctx.on_step)
    if finetuned is not None:
        finetuned(folder)
    record_checkpoint(trial, folder)
    pause_for_test("probe")
    start = time.perf_counter()
    scores = score_probes(ctx.model, ctx.probes, ctx.probe_settings)
    probe_seconds = time.perf_counter() - start
    apart = uncounted_seconds() if uncounted_seconds else {}
    seconds = {"finetune": round(result.seconds - sum(apart.values()), 2), "probe": round(probe_seconds, 2), **apart}
    objective, values = objective_value(scores, recipe.objective.weights), study_values(scores, recipe.objective)
    record_result(trial, scores, objective, seconds, round(result.losses[-1], 6) if result.losses else None)
    atomic_write_text(folder / f"soupkit_{kind}.yaml", yaml.safe_dump({
        kind: trial.number, "study": trial.study.study_name, **(record or {}), "objective": round(objective, 6),
        "values": [round(v, 6) for v in values], "scores": scores, "mixture": mixture.weights,
        "seed": recipe.seed, "finetune": finetune.model_dump(mode="json"), "seconds": seconds, "command": ctx.command,
    }, sort_keys=False))
    return values


def ask(study):
    """The next trial, a queued mixture first (heartbeats come from search.heartbeat, not optimize)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        return study.ask()


def ask_mixture(study, families: list[str], mixture: Mapping[str, float]):
    """A trial that trains exactly `mixture` (a stage's fixed candidate): queued, then asked; a
    mixture an interrupted run queued and never ran is popped first and failed. Returns (trial,
    its weights over `families`)."""
    from soupkit.search.space import params_for_mixture, suggest_mixture

    study.enqueue_trial(params_for_mixture(mixture, families))
    while True:
        trial = ask(study)  # pops the oldest queued mixture: ours, or one a killed run queued
        weights = suggest_mixture(trial, families)
        if all(abs(weights.get(f, 0.0) - w) < 1e-5 for f, w in mixture.items()):
            return trial, weights
        record_error(trial, "a mixture queued by an interrupted run")
        study.tell(trial, state=TrialState.FAIL)


def run_and_tell(study, trial, ctx: TrialContext, body: Callable[[object], float | list[float]], store=None):
    """Run `body(trial)` (heartbeats with a `store`), record why it failed, tell the outcome, return the
    finished trial. Ctrl-C is raised; another error too when the stage says so (`raise_failures`)."""
    record_worker(trial, worker_id(), ctx.sampler)
    with heartbeat(store, study, trial.number) if store is not None else contextlib.nullcontext():
        try:
            values = body(trial)
        except TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            record_error(trial, INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:
            record_error(trial, f"{type(exc).__name__}: {exc}")
            frozen = study.tell(trial, state=TrialState.FAIL)
            if ctx.stage.raise_failures:
                raise
            return frozen
    return study.tell(trial, values)


@contextlib.contextmanager
def failure_as_one_line(what: str) -> Iterator[None]:
    """A stage's failed candidate as one line naming it; the trial keeps the whole error."""
    try:
        yield
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        raise SoupkitError(f"{what} failed: {reason}") from exc


def trained_with_key(study, key: str, run: Path | None = None):
    """A completed candidate recorded with this key (same mixture, base, settings, seed) whose model
    folder is still on disk (as run folder `run` holds it): a stage reuses it instead of training."""
    for t in study.get_trials(deepcopy=False):
        if ingredient_key_of(t) == key and TrialRecord.of(t).has_model(run):
            return t
    return None


def recover(study, store, root: Path, kind: str = "trial", requeue: bool = True) -> tuple[list[int], list[str]]:
    """After a crash: fail trials whose worker here died (`requeue`: their mixtures, and those cut short
    by Ctrl-C, run again), delete partial folders. Returns (trials re-queued, folders removed)."""
    return recover_dead_trials(study, store, requeue), remove_partial_checkpoints(study, root, kind)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, desc: str) -> Iterator[Callable[[int, float], None] | None]:
    """A step callback that moves a progress bar on stderr (None when disabled); closed on exit."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)
    try:
        yield lambda step, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}"))
    finally:
        bar.close()


def record_base_model(study, recipe: Recipe, scores: Mapping[str, float], **extra) -> float:
    """Record the base model's scores with the recipe's objective and values; return its objective."""
    objective = objective_value(scores, recipe.objective.weights)
    record_base(study, scores, objective, study_values(scores, recipe.objective), **extra)
    return objective


def base_scores(recorded: Mapping[str, float] | None, probes: Mapping[str, TaskFamily] | None, model: Callable,
                settings: ProbeSettings, log: Callable = lambda _: None) -> dict[str, float]:
    """The base model's scores: `recorded` if they cover `probes` (any, for None), else scored now."""
    if recorded and (probes is None or set(recorded) == set(probes)):
        return dict(recorded)
    start = time.perf_counter()
    scores = score_probes(model(), probes, settings)
    log(f"base model scored in {time.perf_counter() - start:.1f}s")
    return scores

