"""Trials a pruner stopped reach the model-based samplers as the objective their milestone predicts
(issue 17): without it a real search proposed the same two stopped mixtures 26 times."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from soupkit.search.pruned_trials import (
    ObservingStoppedTrials,
    _StudyWithStoppedTrials,
    predicted_objectives,
)
from soupkit.search.samplers import make_sampler

X = {"x": FloatDistribution(0.0, 1.0)}


def complete(x: float, milestone: float, value: float):
    return create_trial(params={"x": x}, distributions=X, value=value, intermediate_values={8: milestone})


def stopped(x: float, milestone: float, step: int = 8):
    return create_trial(params={"x": x}, distributions=X, state=TrialState.PRUNED,
                        intermediate_values={step: milestone})


def study_of(*trials, sampler=None):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for trial in trials:
        study.add_trial(trial)
    return study


def test_a_stopped_trial_gets_the_objective_the_completed_trials_line_predicts():
    study = study_of(complete(0.1, 0.80, 0.75), complete(0.5, 0.90, 0.81), complete(0.9, 1.00, 0.85),
                     complete(0.6, 0.90, 0.79), stopped(0.3, 0.70))
    # slope 0.5 through the means (0.90, 0.80); residuals 0, 0.01, 0, -0.01: s^2 = 0.0002 / 2;
    # a new observation at 0.70: 0.0001 x (1 + 1/4 + 0.2^2 / 0.02)
    assert predicted_objectives(study.trials) == {4: (pytest.approx(0.70), pytest.approx(0.000325))}


def test_too_few_pairs_a_falling_line_and_trials_that_never_trained():
    few = study_of(complete(0.1, 0.80, 0.75), complete(0.5, 0.90, 0.80), stopped(0.3, 0.70),
                   stopped(0.7, 0.95, step=16))  # two pairs at step 8, none at 16
    # the lowest completed objective, as uncertain as the completed ones are spread (0.025^2)
    assert predicted_objectives(few.trials) == {2: (0.75, pytest.approx(0.000625)), 3: (0.75, pytest.approx(0.000625))}
    falling = study_of(complete(0.1, 0.80, 0.85), complete(0.5, 0.90, 0.80), complete(0.9, 1.00, 0.75),
                       stopped(0.3, 0.70))
    # slope 0: their mean, with their variance (0.0025) x (1 + 1/3)
    assert predicted_objectives(falling.trials) == {3: (pytest.approx(0.80), pytest.approx(0.0025 * 4 / 3))}
    gave_way = study_of(complete(0.1, 0.80, 0.75), create_trial(params={"x": 0.2}, distributions=X,
                                                                 state=TrialState.PRUNED))
    assert predicted_objectives(gave_way.trials) == {}  # pruned before its first milestone: no score
    assert predicted_objectives(study_of(stopped(0.3, 0.70)).trials) == {}  # nothing completed yet


def test_the_sampler_reads_stopped_trials_as_completed_and_the_study_is_untouched():
    study = study_of(complete(0.1, 0.80, 0.75), complete(0.5, 0.90, 0.80), complete(0.9, 1.00, 0.85),
                     stopped(0.3, 0.70))
    view = _StudyWithStoppedTrials(study)
    shown = view.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert [(t.number, t.values[0]) for t in shown] == [(0, 0.75), (1, 0.80), (2, 0.85), (3, pytest.approx(0.70))]
    assert view._get_trials(deepcopy=False, states=(TrialState.PRUNED,), use_cache=True) == []
    assert view.directions == study.directions
    assert view.extra_variances() == pytest.approx([0, 0, 0, 0])  # the line runs through all three
    assert study.trials[3].state == TrialState.PRUNED and study.trials[3].values is None


@pytest.mark.parametrize("name", ["gp", "botorch"])
def test_a_stopped_mixture_is_not_proposed_again(name):
    """What the real search did, in one dimension: the sampler's proposal is stopped at its milestone;
    the bare sampler proposes it again, the wrapped one looks elsewhere."""
    sampler = make_sampler(name, 0, 3)
    assert isinstance(sampler, ObservingStoppedTrials)
    xs = [0.0, 0.15, 0.3, 0.7, 0.85, 1.0]
    trials = [complete(x, 0.05 + 0.8 - (x - 0.5) ** 2, 0.8 - (x - 0.5) ** 2) for x in xs]

    def propose(sampler, *extra) -> float:
        return study_of(*trials, *extra, sampler=sampler).ask(X).params["x"]

    first = propose(make_sampler(name, 0, 3).inner)
    assert 0.3 < first < 0.7  # the model's best guess lies between the trials around the peak
    again = propose(make_sampler(name, 0, 3).inner, stopped(first, 0.60))
    assert again == pytest.approx(first, abs=1e-3)  # the stopped trial is invisible to it
    moved = propose(make_sampler(name, 0, 3), stopped(first, 0.60))
    assert abs(moved - first) > 0.05


def test_the_botorch_acquisition_is_told_each_stopped_trials_extra_variance():
    trials = [complete(0.1, 0.80, 0.75), complete(0.5, 0.90, 0.81), complete(0.9, 1.00, 0.85),
              complete(0.6, 0.90, 0.79), stopped(0.3, 0.70), complete(0.2, 0.85, 0.78)]
    sampler = make_sampler("botorch", 0, 3)
    study_of(*trials, sampler=sampler).ask(X)
    # in the order BoTorchSampler reads the completed trials (the stopped one, #4, among them)
    told = sampler.inner._candidates_func.extra_variance
    assert list(told) == [0, 0, 0, 0, pytest.approx(predicted_objectives(study_of(*trials).trials)[4].variance), 0]
    assert told[4] > 0


def test_an_uncertain_prediction_steers_the_botorch_model_less_than_a_sure_one():
    """A point at the peak, seen as a finished trial (no extra variance) or as a stopped trial's
    unsure prediction. Sure and low, it drives the proposal away; unsure, its value barely matters
    (low or the truth, the same proposal). Either way the proposal is not the point itself: qLogNEI
    finds no improvement over a point already among its baseline."""
    import torch  # a hard dependency: a broken install fails here, it does not skip
    from soupkit.search.samplers import _noisy_acquisition

    x = torch.tensor([[0.0], [0.15], [0.3], [0.7], [0.85], [1.0], [0.5]], dtype=torch.float64)
    bounds = torch.tensor([[0.0], [1.0]], dtype=torch.float64)

    def propose(at_peak: float, extra: float) -> float:
        y = 0.8 - (x - 0.5) ** 2
        y[-1] = at_peak
        torch.manual_seed(0)
        return float(_noisy_acquisition(x, y, None, bounds, None, extra_variance=np.array([0.0] * 6 + [extra])))

    sure_low, unsure_low, unsure_true = propose(0.70, 0.0), propose(0.70, 1.0), propose(0.80, 1.0)
    assert abs(unsure_low - unsure_true) < 0.05
    assert abs(sure_low - 0.5) > abs(unsure_low - 0.5) + 0.05
    assert abs(unsure_low - 0.5) > 0.05
