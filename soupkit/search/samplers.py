"""Optuna samplers by name. Random startup draws come first (a flat Dirichlet over mixtures)."""

from __future__ import annotations

from soupkit.registry import Registry

SAMPLERS: Registry = Registry("sampler")


@SAMPLERS.register("gp")
def gp_sampler(seed: int, n_startup_trials: int):
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)


@SAMPLERS.register("tpe")
def tpe_sampler(seed: int, n_startup_trials: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True)


@SAMPLERS.register("random")
def random_sampler(seed: int, n_startup_trials: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def make_sampler(name: str, seed: int, n_startup_trials: int):
    return SAMPLERS.get(name)(seed, n_startup_trials)
