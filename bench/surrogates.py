"""The table of real trials and the surrogates fitted to it, shared by the benchmark scripts
(bench/samplers.py, bench/early_milestones.py) and tested in tests/test_bench_surrogates.py.

A table is the completed trials of one or more run folders of one recipe: their mixtures, scores,
milestone scores and seconds. A surrogate models objective(mixture) from it; a replay runs a
soupkit sampler (with a pruner) on a surrogate instead of on real trials, under a cost model read
from the same table.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RANDOM_TRIALS = 150  # the table's first trials are random Dirichlet mixtures; the rest GP proposals

@dataclass
class Table:
    families: list[str]
    probes: list[str]
    weights: np.ndarray  # trials x families, rows on the simplex
    objective: np.ndarray  # trials
    scores: np.ndarray  # trials x probes
    base_objective: float
    base_scores: dict[str, float]
    numbers: np.ndarray
    kinds: np.ndarray  # what proposed each trial: "random" (the seed mixture, start-up draws) or the sampler
    runs: np.ndarray  # which run folder each trial comes from (index into `--table`)
    seed_weights: dict[str, float]
    trial_seconds: float
    steps: int  # finetune steps of a trial
    step_seconds: float  # median finetune seconds per step
    probe_seconds: float  # median seconds of one probe pass
    # (step, share of the probe items scored) -> objective there, NaN for trials that did not record it
    milestones: dict[tuple[int, float], np.ndarray]
    milestone_seconds: dict[tuple[int, float], float]  # median seconds of one milestone probe pass
    pruned_runs: set[int]  # runs in which a pruner stopped trials: their completed trials are its survivors

    @property
    def single_trial_seconds(self) -> float:
        """What one trial costs without milestones: the whole finetune and one probe pass."""
        return self.steps * self.step_seconds + self.probe_seconds

def load_table(runs: list[Path], drop: tuple[str, ...] = ()) -> Table:
    """The completed trials of one or more run folders of the same recipe (the recorded table,
    real end-to-end searches); `drop` leaves probes out of the objective (every probe of the
    default recipe weighs 1, so the objective is the mean of the rest)."""
    import optuna

    from soupkit.config import seed_mixture_of
    from soupkit.search.study import close_storage, default_storage, open_storage
    from soupkit.study_record import StudyRecord, TrialRecord, stopped_by_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows, kinds, sources, fractions, pruned_runs = [], [], [], [], set()
    for index, run in enumerate(runs):
        storage = open_storage(default_storage(run))
        study = optuna.load_study(study_name=None, storage=storage)
        record = StudyRecord.of(study)
        recipe = record.recipe()
        search = recipe.search
        if index == 0:
            first, families = record, list(recipe.families)
        elif list(recipe.families) != families or record.base_scores != first.base_scores:
            raise SystemExit(f"{run}: not the same recipe and base model as {runs[0]}")
        for t in study.get_trials(deepcopy=False):
            if stopped_by_pruner(t):
                pruned_runs.add(index)
            if t.state.name == "COMPLETE":
                rows.append(TrialRecord.of(t))
                # trial 0 is the seed mixture, the next n_startup_trials are the sampler's random draws;
                # a trial recorded before soupkit kept its sampler was recorded by --record: random first
                sampler = rows[-1].sampler or ("random" if t.number < RANDOM_TRIALS else "gp")
                kinds.append("random" if sampler == "random" or t.number <= search.n_startup_trials else sampler)
                sources.append(index)
                fractions.append(rows[-1].milestone_fraction)
        close_storage(storage)
    record, recipe = first, first.recipe()
    probes = [p for p in record.base_scores if p not in drop]
    weights = np.array([[r.mixture.get(f, 0.0) for f in families] for r in rows])
    seconds = [r.seconds.get("finetune", 0) + r.seconds.get("probe", 0) for r in rows]
    fidelities = sorted({(step, fraction) for r, fraction in zip(rows, fractions) for step in r.milestones})
    return Table(
        families=families,
        probes=probes,
        weights=weights / weights.sum(axis=1, keepdims=True),
        objective=np.array([np.mean([r.scores[p] for p in probes]) if drop else r.objective for r in rows]),
        scores=np.array([[r.scores[p] for p in probes] for r in rows]),
        base_objective=float(np.mean([record.base_scores[p] for p in probes]) if drop else record.base_objective),
        base_scores={p: record.base_scores[p] for p in probes},
        numbers=np.array([r.number for r in rows]),
        kinds=np.array(kinds),
        runs=np.array(sources),
        seed_weights=dict(seed_mixture_of(recipe, None).weights),
        trial_seconds=float(np.median(seconds)),
        steps=recipe.finetune.steps,
        step_seconds=float(np.median([r.seconds["finetune"] for r in rows])) / recipe.finetune.steps,
        probe_seconds=float(np.median([r.seconds["probe"] for r in rows])),
        milestones={(step, fraction): np.array([r.milestones.get(step, np.nan) if f == fraction else np.nan
                                                for r, f in zip(rows, fractions)])
                    for step, fraction in fidelities},
        milestone_seconds={(step, fraction): float(np.median(
            [r.seconds["milestones"] / len(r.milestones) for r, f in zip(rows, fractions)
             if f == fraction and step in r.milestones and r.seconds.get("milestones")]))
            for step, fraction in fidelities},
        pruned_runs=pruned_runs,
    )

class GPSurrogate:
    """Matern 5/2 GP on the mixture weights with a learned white-noise level, never below
    `noise_floor` (one trial's noise measured by bench/trial_noise.py): left free, maximum
    likelihood may drive the noise to zero and interpolate the table, spikes and all."""

    name = "GP"
    noise_floor = 0.0  # sd in the objective's units; main() sets it from --noise

    def fit(self, x: np.ndarray, y: np.ndarray) -> GPSurrogate:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        floor = max(1e-6, (self.noise_floor / y.std()) ** 2)  # normalize_y: y in units of its sd
        upper = max(1.0, 2 * floor)  # a target whose spread is below the floor (an early milestone) is mostly noise
        kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.full(x.shape[1], 0.5), (1e-2, 1e2), nu=2.5)
                  + WhiteKernel(max(1e-2, 2 * floor), (floor, upper)))
        self.model = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=3, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(np.atleast_2d(x))

    def noise_sd(self) -> float:
        """The white-noise level in the objective's units (normalize_y scales it by y's spread)."""
        white = self.model.kernel_.k2.noise_level
        return float(math.sqrt(white) * self.model._y_train_std)

class QuadraticSurrogate:
    """Scheffe's quadratic mixture model: sum b_i w_i + sum b_ij w_i w_j, ridge-regularised."""

    name = "quadratic"

    @staticmethod
    def features(x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        pairs = [x[:, i] * x[:, j] for i in range(x.shape[1]) for j in range(i + 1, x.shape[1])]
        return np.column_stack([x, *pairs])

    def fit(self, x: np.ndarray, y: np.ndarray) -> QuadraticSurrogate:
        from sklearn.linear_model import RidgeCV

        self.model = RidgeCV(alphas=np.logspace(-6, 1, 15), fit_intercept=False).fit(self.features(x), y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self.features(x))

SURROGATES = (GPSurrogate, QuadraticSurrogate)

def cross_validate(make, x: np.ndarray, y: np.ndarray, folds: int = 5) -> tuple[float, float, float]:
    """Held-out R^2, Spearman rank correlation and RMSE of out-of-fold predictions."""
    from scipy.stats import spearmanr
    from sklearn.model_selection import KFold

    predicted = np.empty_like(y)
    for train, test in KFold(folds, shuffle=True, random_state=0).split(x):
        predicted[test] = make().fit(x[train], y[train]).predict(x[test])
    r2 = 1 - np.sum((y - predicted) ** 2) / np.sum((y - y.mean()) ** 2)
    rmse = float(np.sqrt(np.mean((y - predicted) ** 2)))
    return float(r2), float(spearmanr(y, predicted).statistic), rmse

def best_known(surrogate, table: Table, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The surrogate's maximum over the simplex: the table, 100k Dirichlet draws, then a local
    search around the best points (Dirichlet draws centred on each, narrowing)."""
    candidates = np.vstack([table.weights, rng.dirichlet(np.ones(len(table.families)), 100_000)])
    values = surrogate.predict(candidates)
    for concentration in (50, 200, 1000, 5000):
        top = candidates[np.argsort(values)[-20:]]
        local = np.vstack([rng.dirichlet(concentration * w + 1e-3, 500) for w in top])
        candidates, values = np.vstack([top, local]), np.concatenate([surrogate.predict(top), surrogate.predict(local)])
    i = int(np.argmax(values))
    return float(values[i]), candidates[i]

def median_interval(values: np.ndarray) -> str:
    """Median over seeds with a 95% bootstrap interval (scipy)."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if np.ptp(values) == 0:
        return f"{np.median(values):.4f}"
    ci = bootstrap((values,), np.median, confidence_level=0.95, random_state=0, method="percentile").confidence_interval
    return f"{np.median(values):.4f} [{ci.low:.4f}, {ci.high:.4f}]"

@dataclass
class Milestone:
    """What a replayed trial gets at one milestone step: a surrogate of the objective there, its
    noise, and what scoring it costs (a probe pass over all the items, or a share of them)."""

    mean: object  # weights -> objective at the milestone
    noise_sd: float
    seconds: float

def pruned_replay_sampler(sampler: str, seed: int, stopped: str):
    """The sampler as `soupkit search` makes it ("shown": a stopped trial's predicted objective,
    with its extra variance where the model takes one), or for comparison with stopped trials shown
    as finished values ("as-values", the GPSampler's only way) or not at all ("unseen", the bare
    Optuna or optuna-integration sampler)."""
    from soupkit.search.pruned_trials import ObservingStoppedTrials
    from soupkit.search.samplers import make_sampler

    made = make_sampler(sampler, seed, 11)
    if stopped == "shown" or not isinstance(made, ObservingStoppedTrials):
        return made
    return made.inner if stopped == "unseen" else ObservingStoppedTrials(made.inner)

def same_mixture_same_draw(seed: int, w: np.ndarray, what: int) -> float:
    """One standard normal draw, fixed for a mixture (to 0.01 in every weight), a replay seed and
    what is scored: a real trial is deterministic for its mixture and seed, so a mixture proposed
    again gets the same score again, as in a real search (not a fresh draw that may survive a pruner)."""
    return float(np.random.default_rng([seed, what, *np.round(w * 100).astype(int)]).standard_normal())

def replay_pruned(sampler: str, pruner: str, seed: int, final, milestones: dict[int, Milestone], noise_sd: float,
                  table: Table, max_seconds: float, stopped: str = "shown") -> list[tuple[float, float | None]]:
    """One search on the surrogate with a pruner, until `max_seconds` of modelled compute: each
    milestone costs its finetune steps and its probe pass, a completed trial the rest. Returns
    (seconds spent so far, true final objective or None if pruned) per trial."""
    import optuna

    from soupkit.search.samplers import make_pruner
    from soupkit.search.space import params_for_mixture, suggest_mixture

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    steps = sorted(milestones) if pruner != "none" else []
    study = optuna.create_study(direction="maximize", sampler=pruned_replay_sampler(sampler, seed, stopped),
                                pruner=make_pruner(pruner, steps, table.steps))
    study.enqueue_trial(params_for_mixture(table.seed_weights, table.families))
    spent, out = 0.0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while spent < max_seconds:
            trial = study.ask()
            mixture = suggest_mixture(trial, table.families)
            w = np.array([mixture[f] for f in table.families])
            done_steps, pruned = 0, False
            for step in steps:
                at = milestones[step]
                spent += (step - done_steps) * table.step_seconds + at.seconds
                done_steps = step
                trial.report(float(at.mean(w) + at.noise_sd * same_mixture_same_draw(20_000 + seed, w, step)), step)
                if trial.should_prune():
                    pruned = True
                    break
            if pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                out.append((spent, None))
                continue
            spent += (table.steps - done_steps) * table.step_seconds + table.probe_seconds
            true = float(final(w))
            study.tell(trial, true + noise_sd * same_mixture_same_draw(20_000 + seed, w, 0))
            out.append((spent, true))
    return out

def seconds_to_reach(run: list[tuple[float, float | None]], target: float) -> float:
    for spent, true in run:
        if true is not None and true >= target:
            return spent
    return math.inf

def top_trials_kept(milestone: np.ndarray, final: np.ndarray, step: int, seconds: float,
                    table: Table, keep_share: float = 1 / 3) -> tuple[str, float, float]:
    """Why a pruner can or cannot pay here, from the table alone: of the trials whose final
    objective is in the top decile, how many a cut to the best `keep_share` at this milestone
    (successive halving's first rung: a third with reduction factor 3) would keep, and how fast
    such a cut finds top-decile trials against running every trial to the end (same proposals; a
    stopped trial costs its steps and the milestone pass, a kept one the whole finetune, the
    milestone pass and the final probes). Halving the wall time needs about 2x; the third value is
    the most any milestone this costly could give (one that kept every top-decile trial)."""
    top = final >= np.quantile(final, 0.9)
    keep = milestone >= np.quantile(milestone, 1 - keep_share)
    single = table.single_trial_seconds
    stopped = step * table.step_seconds + seconds
    pruned = (1 - keep_share) * stopped + keep_share * (single + seconds)
    share = (top & keep).sum() / top.sum()
    return f"{(top & keep).sum()} of {top.sum()}", float(share * single / pruned), float(single / pruned)

def report_fidelity(table: Table, fitted: dict, samplers: list[str], pruners: list[str], seeds: int,
                    noise_sd: float, stopped: list[str] = ("shown",), fractions: list[float] | None = None) -> None:
    """Steps as fidelity: pruners against the single-fidelity search, by modelled compute, for
    each kind of milestone the table recorded (all probe items, or a share of them) and each way
    of showing stopped trials to the sampler (`stopped`, STOPPED_TRIALS); `fractions` keeps only
    the milestones that scored these shares of the items."""
    if not table.milestones:
        print("## Multi-fidelity: the table holds no milestone scores (record trials with --milestones)\n")
        return
    from scipy.stats import spearmanr

    recorded = {fraction for _, fraction in table.milestones}
    if fractions and not set(fractions) <= recorded:
        print(f"--milestone-items: the table's milestones scored {', '.join(f'{f:g}' for f in sorted(recorded))} "
              f"of the probe items, not {', '.join(f'{f:g}' for f in sorted(set(fractions) - recorded))}", file=sys.stderr)
        sys.exit(2)
    print("## Multi-fidelity: steps as fidelity (pruners replayed on GP surrogates)\n")
    by_fraction: dict[float, dict[int, Milestone]] = {}
    for (step, fraction), values in table.milestones.items():
        mask = ~np.isnan(values)
        model = GPSurrogate().fit(table.weights[mask], values[mask])
        rho = spearmanr(values[mask], table.objective[mask]).statistic
        seconds = table.milestone_seconds[(step, fraction)]
        kept, rate, most = top_trials_kept(values[mask], table.objective[mask], step, seconds, table)
        print(f"- step {step}, {fraction:g} of the probe items: {mask.sum()} trials recorded it; rank correlation "
              f"with the final objective {rho:.3f}; a milestone probe pass {seconds:.1f} s; noise sd the GP "
              f"fitted {model.noise_sd():.4f}; a cut to the best third there keeps {kept}; top-decile trials "
              f"found per minute with that cut, against single fidelity: {rate:.2f}x (a perfect ranking at that cost: "
              f"{most:.2f}x)")
        by_fraction.setdefault(fraction, {})[step] = Milestone(lambda w, m=model: float(m.predict(w)[0]),
                                                                max(noise_sd, model.noise_sd()), seconds)
    model = fitted["GP"][0]
    final = lambda w: float(model.predict(w)[0])  # noqa: E731
    single = table.single_trial_seconds
    budget = 40 * single
    print(f"\nCost model (this table's medians): {table.step_seconds:.2f} s per step, {table.probe_seconds:.1f} s "
          f"per probe pass; a single-fidelity trial {single:.0f} s; each run gets {budget / 60:.0f} min "
          f"(40 single-fidelity trials).\n")
    print("A repeated mixture draws the same noise as before (same_mixture_same_draw), as in a real search.\n")
    print("| sampler | pruner | milestone items | stopped trials reach the sampler | trials started | stopped | "
          "best true objective | minutes to the single-fidelity search's median best after 40 (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for sampler in samplers:
        runs = {("none", None, "-"): [replay_pruned(sampler, "none", s, final, {}, noise_sd, table, budget)
                                      for s in range(seeds)]}
        for fraction, milestones in sorted(by_fraction.items(), reverse=True):
            if fractions and fraction not in fractions:
                continue
            for pruner in pruners:
                for how in stopped:
                    runs[(pruner, fraction, how)] = [replay_pruned(sampler, pruner, s, final, milestones, noise_sd,
                                                                   table, budget, how) for s in range(seeds)]
        target = float(np.median([max(t for _, t in r if t is not None) for r in runs[("none", None, "-")]]))
        for (pruner, fraction, how), rs in runs.items():
            best = median_interval([max(t for _, t in r if t is not None) for r in rs])
            reach = [seconds_to_reach(r, target) / 60 for r in rs]
            reached = sum(math.isfinite(x) for x in reach)
            median = np.median([x if math.isfinite(x) else budget / 60 + 1 for x in reach])
            shown = f"{median:.0f}" if median <= budget / 60 else f">{budget / 60:.0f}"
            items = "-" if fraction is None else f"{fraction:g}"
            stops = np.median([sum(t is None for _, t in r) for r in rs])
            print(f"| {sampler} | {pruner} | {items} | {how} | {np.median([len(r) for r in rs]):.0f} | {stops:.0f} | "
                  f"{best} | {shown} ({reached}/{len(rs)} reached) |", flush=True)
    print()
