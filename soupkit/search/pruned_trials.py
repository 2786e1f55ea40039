"""Trials a pruner stopped, shown to a model-based sampler as the final objective their milestone
predicts.

Optuna's GPSampler and optuna-integration's BoTorchSampler fit their model to COMPLETE trials only
(running ones enter as pending points); a PRUNED trial teaches them nothing. A mixture stopped at a
milestone stays as attractive as before, so the sampler proposes it again, and since a trial is
deterministic for a given mixture and seed it is stopped again at the same score. In a real search
(docs/benchmarks.md) two workers alternated two such mixtures for 26 trials. Here each stopped trial
counts as completed with the final objective a straight line through the completed trials'
(milestone score, final objective) pairs predicts, and that prediction's variance, for a model that
can weigh it (soupkit's BoTorch acquisition: a stopped trial is a hint about its region, not a
measurement as sure as a finished trial). TPE needs none of this (it ranks pruned trials by their
milestone scores itself).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, NamedTuple

import numpy as np
import optuna
from optuna.trial import TrialState

from soupkit.study_record import two_objectives

MIN_PAIRS = 3  # completed trials with a score at the same milestone before a line is fitted


class Prediction(NamedTuple):
    """The final objective predicted for a stopped trial, and the variance of that prediction
    beyond a completed trial's own noise (how far a final objective strays from the line)."""

    value: float
    variance: float


def predicted_objectives(trials: list) -> dict[int, Prediction]:
    """Trial number -> the final objective predicted for each trial a pruner stopped at a milestone:
    least squares through the completed trials' (score at that milestone, objective), the slope at
    least 0 (a better milestone score never predicts a worse end), with the variance of a new
    observation about that line (larger the further the milestone score lies from theirs). With
    fewer than MIN_PAIRS completed trials at that milestone: the lowest completed objective (a stopped
    trial looked bad), as uncertain as the completed objectives are spread."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values and len(t.values) == 1]
    stopped = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if not complete or not stopped:
        return {}
    objectives = np.array([t.values[0] for t in complete])
    out = {}
    for t in stopped:
        step = max(t.intermediate_values)
        pairs = np.array([(c.intermediate_values[step], c.values[0]) for c in complete if step in c.intermediate_values])
        if len(pairs) < MIN_PAIRS or np.ptp(pairs[:, 0]) == 0:
            out[t.number] = Prediction(float(objectives.min()), float(objectives.var()))
            continue
        out[t.number] = _on_the_line(pairs[:, 0], pairs[:, 1], t.intermediate_values[step])
    return out


def _on_the_line(x: np.ndarray, y: np.ndarray, at: float) -> Prediction:
    """Ordinary least squares of y on x, read at `at`: the value and the variance of a new
    observation there, s^2 (1 + 1/n + (at - mean x)^2 / Sxx); a falling line is replaced by the
    mean of y (slope 0), with y's own sample variance in place of s^2: var(y) (1 + 1/n)."""
    n, centred = len(x), x - x.mean()
    slope = float(centred @ (y - y.mean()) / (centred @ centred))
    if slope <= 0:
        return Prediction(float(y.mean()), float(y.var(ddof=1) * (1 + 1 / n)))
    residuals = y - y.mean() - slope * centred
    s2 = float(residuals @ residuals / (n - 2)) if n > 2 else 0.0
    value = float(y.mean() + slope * (at - x.mean()))
    return Prediction(value, s2 * (1 + 1 / n + (at - x.mean()) ** 2 / float(centred @ centred)))


class _StudyWithStoppedTrials:
    """The study as the inner sampler reads it: stopped trials appear as completed ones carrying
    their predicted objective; everything else is the study's own."""

    def __init__(self, study) -> None:
        self._study = study
        trials = {t.number: t for t in study._get_trials(deepcopy=False, states=None, use_cache=False)}
        self._predictions = predicted_objectives(list(trials.values()))
        self._shown = {}
        for number, prediction in self._predictions.items():
            shown = copy.copy(trials[number])
            shown.state = TrialState.COMPLETE
            shown.values = [prediction.value]
            self._shown[number] = shown

    def extra_variances(self) -> np.ndarray:
        """Per trial the sampler reads as completed, in the order it reads them: 0 for a completed
        trial, the prediction's variance for a stopped one."""
        complete = self.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return np.array([self._predictions[t.number].variance if t.number in self._predictions else 0.0
                         for t in complete])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states=None):
        return self._get_trials(deepcopy=deepcopy, states=states)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False):
        trials = self._study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache)
        trials = [self._shown.get(t.number, t) for t in trials]
        return [t for t in trials if states is None or t.state in states]


class ObservingStoppedTrials(optuna.samplers.BaseSampler):
    """`inner` (a GPSampler or BoTorchSampler) with every trial a pruner stopped shown to its model
    (predicted_objectives). `observe`, if given, is told before each proposal the extra variance of
    every trial the inner sampler will read as completed, in its order, so that a model able to take
    per-trial noise (soupkit's BoTorch acquisition) trusts a prediction less than a finished trial;
    Optuna's GPSampler cannot, and reads the predicted values as finished ones. Optuna's pruners
    need one objective, so a pareto study has no stopped trials and reaches `inner` unchanged."""

    def __init__(self, inner: optuna.samplers.BaseSampler,
                 observe: Callable[[np.ndarray], None] | None = None) -> None:
        self.inner = inner
        self._observe = observe

    def _view(self, study):
        if two_objectives(study):
            if self._observe is not None:
                self._observe(None)
            return study
        view = _StudyWithStoppedTrials(study)
        if self._observe is not None:
            self._observe(view.extra_variances())
        return view

    def infer_relative_search_space(self, study, trial):
        # a stopped trial has the same parameters as a completed one: no view needed to find them
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
