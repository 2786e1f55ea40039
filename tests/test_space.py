"""The simplex parametrisation: hand-made mixtures map back exactly; random draws are valid."""

from __future__ import annotations

import optuna
import pytest

from soupkit.search.space import mixture_of_params, params_for_mixture, suggest_mixture


def test_seed_mixture_round_trips_through_params():
    families = ["a", "b", "c"]
    params = params_for_mixture({"a": 2, "b": 1, "c": 1}, families)
    assert mixture_of_params(params) == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.25})


def test_enqueued_mixture_is_what_the_trial_trains():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(params_for_mixture({"a": 0.7, "b": 0.3, "c": 0.0}, ["a", "b", "c"]))
    trial = study.ask()
    assert suggest_mixture(trial, ["a", "b", "c"]) == pytest.approx({"a": 0.7, "b": 0.3, "c": 0.0}, abs=1e-6)


def test_random_draws_lie_on_the_simplex():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        weights = suggest_mixture(study.ask(), ["a", "b", "c", "d"])
        assert sum(weights.values()) == pytest.approx(1.0)
        assert all(w >= 0 for w in weights.values())
