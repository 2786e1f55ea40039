"""One search trial: what is a search's own around the trained-candidate lifecycle
(soupkit.search.lifecycle): the sampler's mixture, giving way to other workers' trials (budget,
duplicates), and milestones: at the recipe's milestone steps (multi-fidelity search) a trial scores
its probes mid-finetune (all their items, or `search.milestone_fraction` of them), reports the
objective and stops there, with no checkpoint, when the study's pruner says so.
"""

from __future__ import annotations

import time
from pathlib import Path

from optuna import TrialPruned

from soupkit.probes.score import objective_value, score_probes, study_values, told
from soupkit.search.checkpoints import remove_folder
from soupkit.search.lifecycle import TrialContext, train_and_score
from soupkit.search.space import suggest_mixture
from soupkit.search.workers import duplicate_of, over_budget, requeue
from soupkit.study_record import pruned_text, record_milestone, record_pruned, record_skipped


def _give_way_to_budget(trial, ctx: TrialContext) -> None:
    """Prune this trial before it suggests anything (so samplers never see it) when completed
    trials and the trials numbered before it already fill the budget: other workers hold it."""
    if over_budget(trial.study, trial.number, ctx.recipe.search.budget):
        record_skipped(trial, "the budget is held by other workers' trials")
        requeue(trial.study, trial)  # a queued mixture (the seed, a retry) stays queued
        raise TrialPruned("the budget is held by other workers' trials")


def _give_way_to_duplicate(trial, checkpoint: Path | None = None) -> None:
    """Prune this trial when a completed trial, or a running one numbered before it, holds the same
    mixture (the recipe's seed queued by two workers starting together, a retry queued twice).
    Checked before training and again after it, when both trials' mixtures are surely recorded."""
    holder = duplicate_of(trial.study, trial.number, trial.params)
    if holder is not None:
        if checkpoint is not None:
            remove_folder(checkpoint)
        record_skipped(trial, f"same mixture as trial {holder}")
        raise TrialPruned(f"same mixture as trial {holder}")


class Milestones:
    """The finetune's step callback for one trial: the progress bar (ctx.on_step), and at each
    milestone step the probes, the objective reported to the study and the pruner's decision. The
    model is scored as it stands, then put back in train mode (encoding switches it to eval), so
    the finetune goes on as without the milestone and gives the same checkpoint."""

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
        start = time.perf_counter()
        scores = score_probes(self.ctx.model, self.ctx.milestone_probes, self.ctx.probe_settings)
        value = objective_value(scores, self.ctx.recipe.objective.weights)
        self.ctx.model.train()
        record_milestone(self.trial, step, value, self.ctx.recipe.search.milestone_fraction)
        self.seconds += time.perf_counter() - start
        if self.ctx.recipe.objective.two_objectives:  # Optuna reports one objective; the curve is recorded
            return
        self.trial.report(value, step)
        if self.trial.should_prune():
            elapsed = time.perf_counter() - self.started
            record_pruned(self.trial, step, {"finetune": round(elapsed - self.seconds, 2), **self.recorded_seconds()})
            raise TrialPruned(pruned_text(step, value))

    def recorded_seconds(self) -> dict[str, float]:
        """{"milestones": seconds} for a trial that scored milestones, else nothing."""
        return {"milestones": round(self.seconds, 2)} if self.steps else {}


def search_trial(trial, ctx: TrialContext) -> float | list[float]:
    """The Optuna objective of a search: give way if another worker holds the budget or the
    mixture, else train and score the suggested mixture (soupkit.search.lifecycle.run_and_tell
    records a failure and tells the study)."""
    _give_way_to_budget(trial, ctx)
    weights = suggest_mixture(trial, list(ctx.families))
    _give_way_to_duplicate(trial)
    milestones = Milestones(trial, ctx)
    return told(train_and_score(trial, ctx, weights, on_step=milestones.on_step,
                                finetuned=lambda folder: _give_way_to_duplicate(trial, folder),
                                uncounted_seconds=milestones.recorded_seconds))


def merge_trial(trial, ctx: TrialContext, proxy) -> float | list[float]:
    """The Optuna objective of a search by merging: the same giving way and suggestion as a trained
    trial, then the merge of the experts with the mixture's weights scored on the probes (in
    memory: no finetune, no folder), recorded as a merge proxy of its bank."""
    from soupkit.study_record import record_merge_proxy, record_mixture, record_result

    _give_way_to_budget(trial, ctx)
    weights = suggest_mixture(trial, list(ctx.families))
    _give_way_to_duplicate(trial)
    record_merge_proxy(trial, proxy.bank.name)
    record_mixture(trial, {k: round(v, 6) for k, v in weights.items()})
    scores, seconds = proxy.score(weights, ctx.probes, ctx.probe_settings)
    objective = objective_value(scores, ctx.recipe.objective.weights)
    record_result(trial, scores, objective, seconds, None)
    return told(study_values(scores, ctx.recipe.objective))
