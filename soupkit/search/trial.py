"""One search trial: mixture -> finetune -> probe -> objective, with its record in the study.

Every trial records its mixture, scores, checkpoint and seconds (soupkit.study_record) and, on
failure, the error. Its checkpoint folder explains itself: the model, the mixture YAML, the scores.

At the recipe's milestone steps (multi-fidelity search) a trial scores its probes mid-finetune
(all their items, or `search.milestone_fraction` of them), reports the objective to the study and
stops there, with no checkpoint, when the study's pruner says so.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from soupkit.atomic import atomic_write_text
from soupkit.config import Mixture, Recipe
from soupkit.data.family import TaskFamily
from soupkit.errors import SoupkitError
from soupkit.pause import pause_for_test
from soupkit.probes.score import ProbeSettings, objective_value, score_probes, study_values
from soupkit.search.checkpoints import checkpoint_dir, remove_folder
from soupkit.search.space import suggest_mixture
from soupkit.search.study import worker_id
from soupkit.search.workers import duplicate_of, over_budget, requeue
from soupkit.study_record import (
    INTERRUPTED,
    pruned_text,
    record_checkpoint,
    record_error,
    record_milestone,
    record_mixture,
    record_pruned,
    record_result,
    record_skipped,
    record_worker,
)
from soupkit.train.finetune import finetune_on_mixture


@dataclass
class TrialContext:
    """What every trial of one search shares: the loaded data, the model and its base weights."""

    recipe: Recipe
    families: Mapping[str, TaskFamily]  # trained on: the mixture's coordinates
    probes: Mapping[str, TaskFamily]  # scored: the families above plus probe-only ones
    model: object
    base_state: dict
    out: Path
    bf16: bool
    command: str
    on_step: Callable[[int, float], None] | None = None
    checkpoints: Path | None = None  # where trial folders go (default <out>/trials): shared by all workers
    data_seconds: float = 0.0  # time it took to build the families

    @property
    def checkpoint_root(self) -> Path:
        return self.checkpoints or self.out / "trials"

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

    def reset_model(self) -> None:
        self.model.load_state_dict(self.base_state)


def run_trial(trial, ctx: TrialContext) -> float | list[float]:
    """The Optuna objective. Failures are recorded with their reason and re-raised."""
    import optuna

    record_worker(trial, worker_id(), ctx.recipe.search.sampler)
    try:
        return _run_trial(trial, ctx)
    except optuna.TrialPruned:
        raise
    except KeyboardInterrupt:
        record_error(trial, INTERRUPTED)
        raise
    except Exception as exc:
        record_error(trial, f"{type(exc).__name__}: {exc}")
        raise


def _give_way_to_budget(trial, ctx: TrialContext) -> None:
    """Prune this trial before it suggests anything (so samplers never see it) when completed
    trials and the trials numbered before it already fill the budget: other workers hold it."""
    import optuna

    if over_budget(trial.study, trial.number, ctx.recipe.search.budget):
        record_skipped(trial, "the budget is held by other workers' trials")
        requeue(trial.study, trial)  # a queued mixture (the seed, a retry) stays queued
        raise optuna.TrialPruned("the budget is held by other workers' trials")


def _give_way_to_duplicate(trial, checkpoint: Path | None = None) -> None:
    """Prune this trial when a completed trial, or a running one numbered before it, holds the same
    mixture (the recipe's seed queued by two workers starting together, a retry queued twice).
    Checked before training and again after it, when both trials' mixtures are surely recorded."""
    import optuna

    holder = duplicate_of(trial.study, trial.number, trial.params)
    if holder is not None:
        if checkpoint is not None:
            remove_folder(checkpoint)
        record_skipped(trial, f"same mixture as trial {holder}")
        raise optuna.TrialPruned(f"same mixture as trial {holder}")


class Milestones:
    """The finetune's step callback for one trial: the progress bar (ctx.on_step), and at each
    milestone step the probes, the objective reported to the study and the pruner's decision.

    The model is scored as it stands mid-finetune with the trial's probe settings, then put back
    in train mode (encoding switches it to eval), so the finetune goes on as without the milestone
    and a trial that completes gives the same checkpoint."""

    def __init__(self, trial, ctx: TrialContext):
        self.trial, self.ctx = trial, ctx
        self.steps = frozenset(ctx.recipe.milestone_steps())
        self.seconds = 0.0  # spent scoring milestones
        self.started = time.perf_counter()

    def on_step(self, step: int, loss: float) -> None:
        if self.ctx.on_step:
            self.ctx.on_step(step, loss)
        if step in self.steps:
            self.score(step)

    def score(self, step: int) -> None:
        import optuna

        start = time.perf_counter()
        scores = score_probes(self.ctx.model, self.ctx.milestone_probes, self.ctx.probe_settings)
        value = objective_value(scores, self.ctx.recipe.objective.weights)
        self.ctx.model.train()
        record_milestone(self.trial, step, value, self.ctx.recipe.search.milestone_fraction)
        self.seconds += time.perf_counter() - start
        if self.ctx.recipe.objective.mode == "pareto":  # Optuna reports one objective; the curve is recorded
            return
        self.trial.report(value, step)
        if self.trial.should_prune():
            elapsed = time.perf_counter() - self.started
            record_pruned(self.trial, step, {"finetune": round(elapsed - self.seconds, 2), **self.recorded_seconds()})
            raise optuna.TrialPruned(pruned_text(step, value))

    def recorded_seconds(self) -> dict[str, float]:
        """{"milestones": seconds} for a trial that scored milestones, else nothing."""
        return {"milestones": round(self.seconds, 2)} if self.steps else {}


def _run_trial(trial, ctx: TrialContext) -> float | list[float]:
    recipe = ctx.recipe
    _give_way_to_budget(trial, ctx)
    weights = suggest_mixture(trial, list(ctx.families))
    _give_way_to_duplicate(trial)
    mixture = Mixture(name=f"{recipe.name}-trial-{trial.number:04d}", weights={k: round(v, 6) for k, v in weights.items()})
    record_mixture(trial, mixture.weights)
    ckpt = checkpoint_dir(ctx.checkpoint_root, trial.number)
    if ckpt.exists():  # a trial number is new: whatever holds its name, this study did not write
        raise SoupkitError(f"{ckpt} exists and no trial of this study wrote it; soupkit does not replace it")

    ctx.reset_model()
    readme = {"mixture.yaml": mixture.to_yaml()}
    milestones = Milestones(trial, ctx)
    result = finetune_on_mixture(
        ctx.model, ctx.families, weights, recipe.finetune, ckpt, recipe.seed, ctx.bf16, readme, milestones.on_step
    )
    _give_way_to_duplicate(trial, ckpt)
    record_checkpoint(trial, ckpt)

    pause_for_test("probe")
    start = time.perf_counter()
    scores = score_probes(ctx.model, ctx.probes, ctx.probe_settings)
    probe_seconds = time.perf_counter() - start
    value = objective_value(scores, recipe.objective.weights)
    values = study_values(scores, recipe.objective)

    # the finetune's clock ran through the milestones' probes: they are counted apart
    seconds = {"finetune": round(result.seconds - milestones.seconds, 2), "probe": round(probe_seconds, 2),
               **milestones.recorded_seconds()}
    record_result(trial, scores, value, seconds, round(result.losses[-1], 6) if result.losses else None)
    record = {
        "trial": trial.number,
        "study": recipe.name,
        "objective": round(value, 6),
        "values": [round(v, 6) for v in values],
        "scores": scores,
        "mixture": mixture.weights,
        "seed": recipe.seed,
        "finetune": recipe.finetune.model_dump(),
        "seconds": seconds,
        "command": ctx.command,
    }
    atomic_write_text(ckpt / "soupkit_trial.yaml", yaml.safe_dump(record, sort_keys=False))
    return values[0] if len(values) == 1 else values
