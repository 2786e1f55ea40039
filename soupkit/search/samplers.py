"""Optuna samplers and pruners by name. Random startup draws come first (a flat Dirichlet over
mixtures); a pruner decides at a trial's milestone steps (soupkit.search.trial) whether it goes on."""

from __future__ import annotations

from soupkit.registry import Registry

SAMPLERS: Registry = Registry("sampler")
PRUNERS: Registry = Registry("pruner")


@SAMPLERS.register("gp")
def gp_sampler(seed: int, n_startup_trials: int):
    import optuna

    # running trials (other workers') enter its acquisition as pending points (qLogEI)
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)


@SAMPLERS.register("tpe")
def tpe_sampler(seed: int, n_startup_trials: int):
    import optuna

    # constant liar: a running trial (another worker's) counts as a bad one, so workers sharing a
    # study do not propose the same mixture; with one worker nothing is running when it asks
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True,
                                      constant_liar=True)


@SAMPLERS.register("random")
def random_sampler(seed: int, n_startup_trials: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def make_sampler(name: str, seed: int, n_startup_trials: int):
    return SAMPLERS.get(name)(seed, n_startup_trials)


@PRUNERS.register("none")
def no_pruner(milestones: list[int], steps: int):
    import optuna

    return optuna.pruners.NopPruner()


@PRUNERS.register("median")
def median_pruner(milestones: list[int], steps: int):
    """Stop a trial below the median of the completed trials at the same milestone, once 5 trials
    completed (fewer give no median worth trusting)."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


@PRUNERS.register("successive-halving")
def successive_halving_pruner(milestones: list[int], steps: int):
    """Keep the best third of the trials at each rung; the first rung is the first milestone."""
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=milestones[0], reduction_factor=3)


@PRUNERS.register("hyperband")
def hyperband_pruner(milestones: list[int], steps: int):
    """Successive halving in brackets of different aggressiveness, from the first milestone to the
    whole finetune."""
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=milestones[0], max_resource=steps, reduction_factor=3)


def make_pruner(name: str, milestones: list[int], steps: int):
    """The study's pruner; `milestones` are the recipe's milestone steps (Recipe.milestone_steps),
    never empty for a pruner other than `none` (the recipe's validation sees to it)."""
    return PRUNERS.get(name)(milestones, steps)
