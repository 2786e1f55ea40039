"""Several workers on one study: distinct draws, no mixture trained twice, exactly `budget` trials
(completed, or stopped by the pruner).

Every rule here is decided from the storage alone (trial numbers, states and params), so workers on
different machines agree without talking to each other. The lower trial number always wins a tie:
of two trials holding the same mixture or the last slot of the budget, the later one gives way.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Mapping

from soupkit.search.space import PARAM_PREFIX
from soupkit.study_record import queued_attrs, stopped_by_pruner, trial_params


def sampler_seed(recipe_seed: int, n_existing: int, shared: bool) -> int:
    """A lone worker's draws depend only on the recipe and the study's size (reproducible). A
    worker that shares its study mixes in who it is: two workers started together would otherwise
    draw the same mixtures."""
    seed = recipe_seed + n_existing
    if not shared:
        return seed
    who = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}".encode()
    return (seed + int.from_bytes(hashlib.sha256(who).digest()[:4], "big")) % 2**32




def mixture_key(params: Mapping[str, float]) -> tuple:
    return tuple(sorted((k, round(float(v), 9)) for k, v in params.items() if k.startswith(PARAM_PREFIX)))


def duplicate_of(study, number: int, params: Mapping[str, float]) -> int | None:
    """The trial that already holds this mixture: a completed one, or a running one numbered
    before `number`. Failed trials do not count: their retry holds the same mixture on purpose."""
    from optuna.trial import TrialState

    key = mixture_key(params)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if t.number == number or (t.state == TrialState.RUNNING and t.number > number):
            continue
        if mixture_key(trial_params(t)) == key:
            return t.number
    return None


def over_budget(study, number: int, budget: int) -> bool:
    """Whether trial `number`, just started, would run past the budget: the trials it counts
    (completed, or stopped by the pruner: soupkit.search.study.trial_counts) and the running or
    queued trials numbered before it fill it already. (A queued trial is popped before any new
    one, so it is ahead; trial numbers only grow, so the set ahead never gains members.)"""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    trials = study.get_trials(deepcopy=False, states=states)
    done = sum(t.state == TrialState.COMPLETE or stopped_by_pruner(t) for t in trials)
    ahead = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number < number for t in trials)
    return done + ahead >= budget


def requeue(study, trial) -> None:
    """Queue a trial's fixed mixture again (a trial that gave way must not lose a queued mixture)."""
    params = trial_params(trial)
    if params:
        study.enqueue_trial(params, user_attrs=queued_attrs(trial) or None, skip_if_exists=False)
