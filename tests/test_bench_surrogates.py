"""bench/surrogates.py, the library under the benchmark scripts: the table read from a study, the
surrogates fitted to it and the pruning arithmetic, checked on values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench.surrogates import (
    GPSurrogate,
    QuadraticSurrogate,
    cross_validate,
    load_table,
    median_interval,
    same_mixture_same_draw,
    top_trials_kept,
)


def quadratic(w: np.ndarray) -> np.ndarray:
    """Scheffe's quadratic mixture model with known coefficients."""
    w = np.atleast_2d(w)
    return 0.7 * w[:, 0] + 0.5 * w[:, 1] + 0.6 * w[:, 2] + 0.4 * w[:, 0] * w[:, 1]


@pytest.fixture(scope="module")
def mixtures() -> np.ndarray:
    return np.random.default_rng(0).dirichlet(np.ones(3), 60)


def test_the_quadratic_surrogate_recovers_a_quadratic_mixture_model(mixtures):
    model = QuadraticSurrogate().fit(mixtures, quadratic(mixtures))
    fresh = np.random.default_rng(1).dirichlet(np.ones(3), 10)
    assert model.predict(fresh) == pytest.approx(quadratic(fresh), abs=1e-4)
    r2, rho, rmse = cross_validate(QuadraticSurrogate, mixtures, quadratic(mixtures))
    assert r2 > 0.999 and rho > 0.99 and rmse < 1e-3


def test_the_gp_never_believes_less_noise_than_its_floor(mixtures):
    noisy = quadratic(mixtures) + np.random.default_rng(2).normal(0, 0.001, len(mixtures))
    GPSurrogate.noise_floor = 0.01
    try:
        model = GPSurrogate().fit(mixtures, noisy)
    finally:
        GPSurrogate.noise_floor = 0.0
    assert model.noise_sd() >= 0.01 * (1 - 1e-6)
    assert np.corrcoef(model.predict(mixtures), quadratic(mixtures))[0, 1] > 0.9


class _Costs:
    """What top_trials_kept reads of a table: 10 steps of 2 s and a 5 s probe pass (a trial: 25 s)."""

    step_seconds = 2.0
    single_trial_seconds = 25.0


def test_a_milestone_that_ranks_as_the_end_keeps_every_top_trial_and_gains_its_cost_ratio():
    final = np.arange(30, dtype=float)
    kept, rate, most = top_trials_kept(final, final, step=5, seconds=5.0, table=_Costs(), keep_share=1 / 3)
    # a stopped trial costs 5 steps (10 s) and the milestone (5 s); a kept one 25 s and the milestone
    pruned = 2 / 3 * 15.0 + 1 / 3 * 30.0
    assert kept == "3 of 3"
    assert most == pytest.approx(25.0 / pruned) and rate == pytest.approx(most)


def test_a_milestone_that_ranks_backwards_keeps_no_top_trial():
    final = np.arange(30, dtype=float)
    kept, rate, _ = top_trials_kept(-final, final, step=5, seconds=5.0, table=_Costs())
    assert kept == "0 of 3" and rate == 0.0


def test_a_mixture_draws_the_same_noise_again_and_another_seed_another():
    w = np.array([0.2, 0.3, 0.5])
    assert same_mixture_same_draw(1, w, 8) == same_mixture_same_draw(1, w + 0.001, 8)
    assert same_mixture_same_draw(1, w, 8) != same_mixture_same_draw(2, w, 8)
    assert median_interval(np.array([0.5, 0.5, 0.5])) == "0.5000"


def test_the_table_is_read_from_a_study_as_soupkit_search_records_it(tmp_path):
    import json

    import optuna

    from soupkit.config import Recipe
    from soupkit.search.study import close_storage, default_storage, open_storage
    from soupkit.study_record import (
        BASE_OBJECTIVE,
        BASE_SCORES,
        MILESTONES,
        MIXTURE,
        OBJECTIVE,
        RECIPE,
        SCORES,
        SECONDS,
    )

    recipe = Recipe(name="t", families=["a", "b"], seed_mixture={"a": 1.0, "b": 1.0},
                    finetune={"steps": 10}, search={"n_startup_trials": 1})
    storage = open_storage(default_storage(tmp_path), create=True)
    study = optuna.create_study(storage=storage, study_name="t", direction="maximize")
    study.set_user_attr(RECIPE, json.dumps(recipe.model_dump(mode="json")))
    study.set_user_attr(BASE_SCORES, {"a": 0.5, "b": 0.3})
    study.set_user_attr(BASE_OBJECTIVE, 0.4)
    for mixture, scores, milestone in [({"a": 0.25, "b": 0.75}, {"a": 0.6, "b": 0.4}, 0.45),
                                       ({"a": 1.0, "b": 0.0}, {"a": 0.8, "b": 0.2}, 0.5)]:
        objective = sum(scores.values()) / 2
        study.add_trial(optuna.trial.create_trial(value=objective, user_attrs={
            MIXTURE: mixture, SCORES: scores, OBJECTIVE: objective, MILESTONES: {"5": milestone},
            SECONDS: {"finetune": 20.0, "probe": 4.0, "milestones": 2.0}}))
    close_storage(storage)

    # bench/export_trials.py's CSV reads back as the same table, on a machine without the run
    from bench.surrogates import study_source, write_trials_csv

    write_trials_csv(study_source(tmp_path), tmp_path / "t.csv")
    for run in (tmp_path, tmp_path / "t.csv"):
        _check_table(load_table([run], drop=("b",)))


def _check_table(table):
    assert table.families == ["a", "b"] and table.probes == ["a"]
    assert table.weights.tolist() == [[0.25, 0.75], [1.0, 0.0]]
    assert table.objective.tolist() == [0.6, 0.8]  # with `b` dropped: the mean of the rest
    assert table.base_objective == 0.5 and table.seed_weights == {"a": 1.0, "b": 1.0}
    assert table.step_seconds == 2.0 and table.probe_seconds == 4.0 and table.single_trial_seconds == 24.0
    assert list(table.milestones) == [(5, 1.0)] and table.milestones[(5, 1.0)].tolist() == [0.45, 0.5]
    assert table.milestone_seconds[(5, 1.0)] == 2.0
    assert table.kinds.tolist() == ["random", "random"]  # the seed mixture and the one start-up draw
