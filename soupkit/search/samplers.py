"""Optuna samplers and pruners by name. Random startup draws come first (a flat Dirichlet over
mixtures); a pruner decides at a trial's milestone steps (soupkit.search.trial) whether it goes on."""

from __future__ import annotations

from soupkit.errors import SoupkitError
from soupkit.registry import Registry

SAMPLERS: Registry = Registry("sampler")
PRUNERS: Registry = Registry("pruner")


@SAMPLERS.register("gp")
def gp_sampler(seed: int, n_startup_trials: int):
    import optuna

    from soupkit.search.pruned_trials import ObservingStoppedTrials

    # running trials (other workers') enter its acquisition as pending points (qLogEI); trials a
    # pruner stopped enter with the objective their milestone predicts
    return ObservingStoppedTrials(optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials))


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


@SAMPLERS.register("botorch")
def botorch_sampler(seed: int, n_startup_trials: int):
    """BoTorch's noisy acquisitions through optuna-integration: qLogNEI for one objective,
    qLogNEHVI for a pareto recipe's two. Running trials of other workers enter either as pending
    points (`consider_running_trials`, with which optuna-integration's own default would be plain qEI),
    trials a pruner stopped with the objective their milestone predicts and that prediction's extra
    variance (soupkit.search.pruned_trials)."""
    import warnings

    import optuna

    from soupkit.search.pruned_trials import ObservingStoppedTrials

    BoTorchSampler = _botorch_sampler_class()
    with warnings.catch_warnings():  # experimental; tests/test_samplers.py holds what soupkit relies on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        acquisition = _WithStoppedTrialNoise()
        return ObservingStoppedTrials(BoTorchSampler(candidates_func=acquisition, seed=seed,
                                                     n_startup_trials=n_startup_trials, consider_running_trials=True),
                                      observe=acquisition.observe)


class _WithStoppedTrialNoise:
    """The candidates function BoTorchSampler calls: _noisy_acquisition, given the extra variance of
    each trial it fits (ObservingStoppedTrials tells it before each proposal)."""

    def __init__(self) -> None:
        self.extra_variance = None

    def observe(self, extra_variance) -> None:
        self.extra_variance = extra_variance

    def __call__(self, train_x, train_obj, train_con, bounds, pending_x):
        extra = self.extra_variance
        if extra is not None and len(extra) != len(train_obj):
            raise RuntimeError(f"{len(extra)} extra variances for {len(train_obj)} trials")
        return _noisy_acquisition(train_x, train_obj, train_con, bounds, pending_x, extra_variance=extra)


def _noisy_acquisition(train_x, train_obj, train_con, bounds, pending_x, extra_variance=None):
    """qLogNEI (one objective) or qLogNEHVI (two), chosen by the number of objective columns: a
    trial's objective is one noisy draw (bench/trial_noise.py), so improvement is measured against
    the model's belief about the trials run, not their best observed value, which a lucky draw
    inflates and plain EI then searches around (what Optuna's GPSampler did in a real search). Its
    noise and a proposal's cost are measured in docs/benchmarks.md (bench/acquisition_cost.py)."""
    import warnings

    import optuna
    from optuna_integration.botorch import qnehvi_candidates_func

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if train_obj.size(-1) == 1:  # soupkit passes no constraints
            return _qlognei_candidates(train_x, train_obj, bounds, pending_x, extra_variance)
        return qnehvi_candidates_func(train_x, train_obj, train_con, bounds, pending_x)


def _qlognei_candidates(train_x, train_obj, bounds, pending_x, extra_variance=None):
    """One candidate maximising BoTorch's qLogNoisyExpectedImprovement of a GP fitted to the trials
    (inputs scaled to the unit cube, outcomes standardised; the GP learns the noise level). A trial
    with `extra_variance` above 0 (a stopped trial's predicted objective) is observed with that
    much more noise than the learned level: a hint about its region, not a finished measurement."""
    import torch
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler
    from botorch.utils.transforms import normalize, unnormalize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    x = normalize(train_x, bounds=bounds)
    model = SingleTaskGP(x, train_obj, outcome_transform=Standardize(m=1),
                         likelihood=_with_extra_noise(train_obj, extra_variance))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    acquisition = qLogNoisyExpectedImprovement(
        model, X_baseline=x, sampler=SobolQMCNormalSampler(torch.Size([256])), prune_baseline=True,
        X_pending=normalize(pending_x, bounds=bounds) if pending_x is not None else None)
    unit = torch.stack([torch.zeros(bounds.size(1)), torch.ones(bounds.size(1))]).to(x)
    candidate, _ = optimize_acqf(acquisition, bounds=unit, q=1, num_restarts=10, raw_samples=512,
                                 options={"batch_limit": 5, "maxiter": 200})
    return unnormalize(candidate.detach(), bounds=bounds)


def _with_extra_noise(train_obj, extra_variance):
    """None (SingleTaskGP's own likelihood: one learned noise level, with its LogNormal prior) when
    no trial has extra variance; else per-trial fixed noise, the extra variance in the standardised
    units the model fits, plus that same learned level."""
    if extra_variance is None or not (extra_variance > 0).any():
        return None
    import torch
    from botorch.models.utils.gpytorch_modules import MIN_INFERRED_NOISE_LEVEL
    from gpytorch.constraints import GreaterThan
    from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
    from gpytorch.priors import LogNormalPrior

    prior = LogNormalPrior(loc=-4.0, scale=1.0)
    spread = train_obj.var()  # Standardize divides by the sd; all-equal objectives leave them as they are
    standardised = torch.as_tensor(extra_variance).to(train_obj) / (spread if spread > 0 else 1.0)
    return FixedNoiseGaussianLikelihood(
        noise=standardised.clamp_min(MIN_INFERRED_NOISE_LEVEL), learn_additional_noise=True, noise_prior=prior,
        noise_constraint=GreaterThan(MIN_INFERRED_NOISE_LEVEL, transform=None, initial_value=prior.mode))


def _botorch_sampler_class():
    try:
        import botorch  # noqa: F401  (optuna-integration imports it lazily, failing mid-search)
        from optuna_integration import BoTorchSampler
    except ImportError as exc:
        raise SoupkitError(f"sampler 'botorch' needs {exc.name or 'botorch'}, which is not installed (a soupkit "
                           "dependency): install it with: pip install botorch optuna-integration") from None
    return BoTorchSampler


def make_sampler(name: str, seed: int, n_startup_trials: int):
    return SAMPLERS.get(name)(seed, n_startup_trials)


def check_sampler(name: str) -> None:
    """A sampler whose package is missing fails before anything is written, in one line."""
    make_sampler(name, 0, 1)


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
