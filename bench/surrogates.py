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

@dataclass
class _Source:
    """One run folder's (or exported CSV's) completed trials and what the table needs of its recipe."""

    families: list[str]
    base_scores: dict[str, float]
    base_objective: float
    seed_weights: dict[str, float]
    steps: int
    rows: list  # soupkit.study_record.TrialRecord of each completed trial
    kinds: list[str]
    pruned: bool  # a pruner stopped trials of this run
    recipe: str = ""
    base: str = ""
    train: str = "all"


def load_table(runs: list[Path], drop: tuple[str, ...] = ()) -> Table:
    """The completed trials of one or more run folders of the same recipe (the recorded table,
    real end-to-end searches), or of the CSV files bench/export_trials.py wrote from them; `drop`
    leaves probes out of the objective (every probe of the default recipe weighs 1, so the
    objective is the mean of the rest)."""
    sources = [read_trials_csv(Path(run)) if str(run).endswith(".csv") else study_source(Path(run)) for run in runs]
    first = sources[0]
    for run, source in zip(runs[1:], sources[1:]):
        if source.families != first.families or source.base_scores != first.base_scores:
            raise SystemExit(f"{run}: not the same recipe and base model as {runs[0]}")
    rows = [r for source in sources for r in source.rows]
    kinds = [k for source in sources for k in source.kinds]
    origin = [i for i, source in enumerate(sources) for _ in source.rows]
    fractions = [r.milestone_fraction for r in rows]
    families, steps = first.families, first.steps
    probes = [p for p in first.base_scores if p not in drop]
    weights = np.array([[r.mixture.get(f, 0.0) for f in families] for r in rows])
    seconds = [r.seconds.get("finetune", 0) + r.seconds.get("probe", 0) for r in rows]
    fidelities = sorted({(step, fraction) for r, fraction in zip(rows, fractions) for step in r.milestones})
    return Table(
        families=families,
        probes=probes,
        weights=weights / weights.sum(axis=1, keepdims=True),
        objective=np.array([np.mean([r.scores[p] for p in probes]) if drop else r.objective for r in rows]),
        scores=np.array([[r.scores[p] for p in probes] for r in rows]),
        base_objective=float(np.mean([first.base_scores[p] for p in probes]) if drop else first.base_objective),
        base_scores={p: first.base_scores[p] for p in probes},
        numbers=np.array([r.number for r in rows]),
        kinds=np.array(kinds),
        runs=np.array(origin),
        seed_weights=dict(first.seed_weights),
        trial_seconds=float(np.median(seconds)),
        steps=steps,
        step_seconds=float(np.median([r.seconds["finetune"] for r in rows])) / steps,
        probe_seconds=float(np.median([r.seconds["probe"] for r in rows])),
        milestones={(step, fraction): np.array([r.milestones.get(step, np.nan) if f == fraction else np.nan
                                                for r, f in zip(rows, fractions)])
                    for step, fraction in fidelities},
        milestone_seconds={(step, fraction): float(np.median(
            [r.seconds["milestones"] / len(r.milestones) for r, f in zip(rows, fractions)
             if f == fraction and step in r.milestones and r.seconds.get("milestones")]))
            for step, fraction in fidelities},
        pruned_runs={i for i, source in enumerate(sources) if source.pruned},
    )


def study_source(run: Path, ingredient_set: str | None = None) -> _Source:
    """The completed trials of a run's search; with `ingredient_set`, the ingredients of that set
    instead (its mixtures finetuned as the set says, e.g. longer: the --reference of a rank check)."""
    import optuna

    from soupkit.config import seed_mixture_of
    from soupkit.search.study import close_storage, default_storage, open_storage
    from soupkit.study_record import StudyRecord, TrialRecord, stopped_by_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(default_storage(run))
    try:
        from soupkit.search.study import search_study_names

        study = optuna.load_study(study_name=search_study_names(storage)[0], storage=storage)
        record = StudyRecord.of(study)
        recipe = record.recipe()
        rows, kinds, pruned = [], [], False
        steps, train, trials = recipe.finetune.steps, recipe.finetune.train, study.get_trials(deepcopy=False)
        if ingredient_set is not None:
            from soupkit.soups.ingredient_study import find_ingredient_study, load_set

            ingredients = find_ingredient_study(storage, study)
            chosen = load_set(ingredients, ingredient_set)
            steps, train = chosen.finetune.get("steps", steps), chosen.finetune.get("train", train)
            trials = [t for t in ingredients.get_trials(deepcopy=False) if t.number in chosen.ingredients]
        for t in trials:
            pruned = pruned or stopped_by_pruner(t)
            if t.state.name == "COMPLETE":
                rows.append(TrialRecord.of(t))
                # trial 0 is the seed mixture, the next n_startup_trials are the sampler's random draws;
                # a trial recorded before soupkit kept its sampler was recorded by --record: random first
                sampler = rows[-1].sampler or ("random" if t.number < RANDOM_TRIALS else "gp")
                kinds.append("ingredient" if ingredient_set is not None else
                             "random" if sampler == "random" or t.number <= recipe.search.n_startup_trials else sampler)
    finally:
        close_storage(storage)
    return _Source(list(recipe.family_names()), dict(record.base_scores), float(record.base_objective),
                   dict(seed_mixture_of(recipe, None).weights), steps, rows, kinds, pruned,
                   recipe.name, recipe.base, train)


# The CSV form of a table (bench/export_trials.py): one row per completed trial, a `base` row with
# the base model's scores and the seed mixture's weights, a `stopped` row when a pruner stopped trials.
CSV_FIXED = ("row", "number", "kind", "recipe", "base", "train", "steps", "objective", "finetune_seconds",
             "probe_seconds", "milestone_seconds", "milestone_fraction", "milestones")
WEIGHT, SCORE = "weight:", "score:"


def read_trials_csv(path: Path) -> _Source:
    import csv
    import json

    from soupkit.study_record import TrialRecord

    with open(path, newline="") as handle:
        lines = list(csv.DictReader(handle))
    if not lines:
        raise SystemExit(f"{path}: no rows")
    columns = list(lines[0])
    families = [c.removeprefix(WEIGHT) for c in columns if c.startswith(WEIGHT)]
    probes = [c.removeprefix(SCORE) for c in columns if c.startswith(SCORE)]
    base = next((line for line in lines if line["row"] == "base"), None)
    if base is None:
        raise SystemExit(f"{path}: no base row")
    rows, kinds = [], []
    for line in lines:
        if line["row"] != "trial":
            continue
        seconds = {"finetune": float(line["finetune_seconds"]), "probe": float(line["probe_seconds"])}
        if line["milestone_seconds"]:
            seconds["milestones"] = float(line["milestone_seconds"])
        rows.append(TrialRecord(
            number=int(line["number"]), state="COMPLETE",
            mixture={f: float(line[WEIGHT + f]) for f in families}, scores={p: float(line[SCORE + p]) for p in probes},
            objective=float(line["objective"]), values=None, checkpoint=None, seconds=seconds, error=None,
            skipped=None, retry_of=None, seeded=None, worker={}, base=line["base"],
            milestones={int(k): float(v) for k, v in json.loads(line["milestones"] or "{}").items()},
            sampler=line["kind"], milestone_fraction=float(line["milestone_fraction"] or 1.0)))
        kinds.append(line["kind"])
    return _Source(families, {p: float(base[SCORE + p]) for p in probes}, float(base["objective"]),
                   {f: float(base[WEIGHT + f]) for f in families if float(base[WEIGHT + f]) > 0}, int(base["steps"]),
                   rows, kinds, any(line["row"] == "stopped" for line in lines), base["recipe"], base["base"],
                   base["train"] or "all")


def write_trials_csv(source: _Source, path: Path) -> None:
    """A run's trials as CSV (read back by read_trials_csv): small, no model weights, enough to
    replay samplers and rank checks on a fresh machine without training."""
    import csv
    import json

    probes = list(source.base_scores)
    header = [*CSV_FIXED, *(WEIGHT + f for f in source.families), *(SCORE + p for p in probes)]
    common = {"recipe": source.recipe, "base": source.base, "train": source.train, "steps": source.steps}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        out = csv.DictWriter(handle, header)
        out.writeheader()
        out.writerow({**common, "row": "base", "objective": round(source.base_objective, 6),
                      **{WEIGHT + f: source.seed_weights.get(f, 0.0) for f in source.families},
                      **{SCORE + p: round(source.base_scores[p], 6) for p in probes}})
        for r, kind in zip(source.rows, source.kinds):
            total = sum(r.mixture.values())
            out.writerow({**common, "row": "trial", "number": r.number, "kind": kind,
                          "objective": round(r.objective, 6), "finetune_seconds": r.seconds.get("finetune", 0),
                          "probe_seconds": r.seconds.get("probe", 0),
                          "milestone_seconds": r.seconds.get("milestones", ""),
                          "milestone_fraction": r.milestone_fraction,
                          "milestones": json.dumps({str(k): v for k, v in r.milestones.items()}) if r.milestones else "",
                          **{WEIGHT + f: round(r.mixture.get(f, 0.0) / total, 6) for f in source.families},
                          **{SCORE + p: round(r.scores[p], 6) for p in probes}})
        if source.pruned:
            out.writerow({**common, "row": "stopped"})


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
