"""Does the Bayesian search earn its cost? soupkit's samplers replayed on a surrogate of real trials.

    python bench/samplers.py --record runs/sampler-table   # rebuild the table: ~200 real trials, hours
    python bench/samplers.py --table runs/sampler-table    # fit, replay, print Markdown (minutes)

Real trials cost over 2 minutes each on 2 CPU cores, so samplers are not compared by running each one many
times for real. Instead:

1. The table: one study of the default recipe holding at least 200 real trials, random Dirichlet
   mixtures (the first RANDOM_TRIALS) then GP proposals on top of them, so that the table covers
   the simplex and, densely, the region the GP believes best. Each trial also scores its probes
   after MILESTONE steps (`--milestones`: the data of the multi-fidelity replay; the finetune goes
   on unchanged). `--record` rebuilds it with the same two `soupkit search` commands that made it
   (resumable: run it again after an interruption).
2. The surrogate: two models of objective(mixture) fitted to the table, a Gaussian process
   (Matern 5/2 + white noise, whose noise level estimates the probe and training noise of one
   trial) and Scheffe's quadratic mixture model (ridge regression on w_i and w_i*w_j): different
   families, so a ranking that holds on both is not an artefact of one. Reported: 5-fold held-out
   R^2 and Spearman rank correlation.
3. The replay: every sampler soupkit offers, with its real settings (seed mixture first, the same
   Dirichlet parametrisation of the simplex, the same start-up trials), proposes mixtures; each is
   scored by the surrogate's mean plus Gaussian noise of the estimated size, and the sampler sees
   only the noisy value. Reported per sampler over seeds: the best true (mean) objective after
   10/20/40 trials with a 95% bootstrap interval of the median, and the trials it takes to reach
   95% of the best known *gain* over the base model (95% of the objective itself would be reached
   by the base model: see docs/benchmarks.md).

`--pareto` replays the two-objective form (domain = medical-icd10 and legal-licences, general = the
other five probes) and compares samplers by the hypervolume they dominate above the base model;
`--workers 1,2,4` replays several workers on one study (asynchronous: each worker asks for a new
mixture while the others' trials are still running) and counts near-duplicate proposals.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from surrogates import (  # bench/surrogates.py: this script's folder is on the path when it runs
    RANDOM_TRIALS,
    SURROGATES,
    GPSurrogate,
    Table,
    best_known,
    cross_validate,
    load_table,
    median_interval,
    report_fidelity,
)

TABLE_TRIALS = 200
MILESTONES = (10, 20, 40)
DOMAIN = ("medical-icd10", "legal-licences")  # the two-objective form: these against the rest
MILESTONE = 8  # the table's trials also score their probes after 8 of 24 steps (multi-fidelity data)
NEAR = 0.05  # two mixtures closer than this in L1 distance are near-duplicates


# --- the table -------------------------------------------------------------------------------


def record_table(out: Path) -> None:
    """The two searches that build the table (each resumes where an interrupted run stopped)."""
    for sampler, budget in (("random", RANDOM_TRIALS), ("gp", TABLE_TRIALS)):
        command = ["soupkit", "search", "--sampler", sampler, "--budget", str(budget),
                   "--keep-checkpoints", "4", "--milestones", str(MILESTONE), "--out", str(out), "--quiet"]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)


# --- replay ----------------------------------------------------------------------------------


def stick_mixture(trial, families: list[str]) -> dict[str, float]:
    """Stick-breaking: one uniform coordinate per family but the last, each mapped through the
    Beta(1, K-1-k) quantile so that uniform draws are a flat Dirichlet, as in soupkit's space, but
    without its redundant scale (K-1 coordinates for a (K-1)-dimensional simplex)."""
    rest, weights = 1.0, {}
    for k, family in enumerate(families[:-1]):
        u = trial.suggest_float("s_" + family, 0.0, 1.0)
        weights[family] = rest * (1 - (1 - u) ** (1 / (len(families) - 1 - k)))
        rest -= weights[family]
    weights[families[-1]] = max(rest, 0.0)
    return weights


def stick_params(weights: dict[str, float], families: list[str]) -> dict[str, float]:
    total = sum(weights.values())
    rest, params = 1.0, {}
    for k, family in enumerate(families[:-1]):
        v = min(1.0, weights.get(family, 0.0) / total / rest) if rest > 0 else 0.0
        params["s_" + family] = 1 - (1 - v) ** (len(families) - 1 - k)
        rest -= weights.get(family, 0.0) / total
    return params


SPAN = 4.0  # log-ratio coordinates lie in [-SPAN, SPAN]: a family weighs e^-8 to e^8 times the last


def logratio_mixture(trial, families: list[str]) -> dict[str, float]:
    """Additive log-ratio: weights = softmax(z_1 .. z_{K-1}, 0), each z uniform in [-SPAN, SPAN]."""
    z = [trial.suggest_float("z_" + f, -SPAN, SPAN) for f in families[:-1]] + [0.0]
    e = np.exp(np.array(z) - max(z))
    return dict(zip(families, (e / e.sum()).tolist()))


def logratio_params(weights: dict[str, float], families: list[str]) -> dict[str, float]:
    last = max(weights.get(families[-1], 0.0), 1e-9)
    return {"z_" + f: float(np.clip(math.log(max(weights.get(f, 0.0), 1e-9) / last), -SPAN, SPAN))
            for f in families[:-1]}


def space(name: str):
    """(suggest, params for a given mixture) of a parametrisation of the simplex; `neglog` is soupkit's."""
    from soupkit.search.space import params_for_mixture, suggest_mixture

    return {"neglog": (suggest_mixture, params_for_mixture), "stick": (stick_mixture, stick_params),
            "logratio": (logratio_mixture, logratio_params)}[name]


@dataclass
class Replay:
    true: np.ndarray  # the surrogate mean of each proposal, in proposal order
    proposals: np.ndarray  # proposals x families
    near_duplicates: int


def replay(sampler: str, seed: int, objective, noise_sd: float, table: Table, n_trials: int,
           workers: int = 1, directions: int = 1, space_name: str = "neglog", startup: int = 10) -> Replay:
    """One search on the surrogate, as soupkit runs it: the recipe's seed mixture first, the
    sampler's start-up draws, then its proposals. `workers` trials run at once (asynchronously)."""
    import optuna

    from soupkit.search.samplers import make_sampler

    suggest_mixture, params_for_mixture = space(space_name)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = np.random.default_rng(10_000 + seed)
    # the default recipe's n_startup_trials, plus the seed mixture (run.py counts it the same way)
    study = optuna.create_study(directions=["maximize"] * directions,
                                sampler=make_sampler(sampler, seed, startup + 1))
    study.enqueue_trial(params_for_mixture(table.seed_weights, table.families))
    running: list[tuple[object, np.ndarray]] = []
    true, proposals, near = [], [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while len(true) < n_trials:
            while len(running) < workers and len(true) + len(running) < n_trials:
                trial = study.ask()
                mixture = suggest_mixture(trial, table.families)
                w = np.array([mixture[f] for f in table.families])
                others = [p for p in proposals] + [r[1] for r in running]
                if others and np.min(np.abs(np.array(others) - w).sum(axis=1)) < NEAR:
                    near += 1
                running.append((trial, w))
            trial, w = running.pop(0)
            mean = objective(w)
            noisy = mean + rng.normal(0, noise_sd, size=np.shape(mean))
            study.tell(trial, noisy.tolist() if directions > 1 else float(noisy))
            true.append(mean)
            proposals.append(w)
    return Replay(np.array(true), np.array(proposals), near)


def trials_to_reach(true: np.ndarray, threshold: float) -> float:
    hits = np.nonzero(true >= threshold)[0]
    return float(hits[0] + 1) if len(hits) else math.inf


def fmt_trials(values: list[float], n_trials: int) -> str:
    finite = [v for v in values if math.isfinite(v)]
    median = np.median([v if math.isfinite(v) else n_trials + 1 for v in values])
    shown = f"{median:.0f}" if median <= n_trials else f">{n_trials}"
    return f"{shown} ({len(finite)}/{len(values)} reached)"


# --- reports ---------------------------------------------------------------------------------


def report_table(table: Table) -> None:
    kinds = sorted(set(table.kinds), key=lambda k: (k != "random", k))
    counts = ", ".join(f"{(table.kinds == k).sum()} {'random Dirichlet mixtures (with the seed mixture)' if k == 'random' else k + ' proposals'}"
                       for k in kinds)
    print(f"## The table: {len(table.objective)} real trials of the default recipe, from {len(set(table.runs))} "
          f"run(s)\n")
    print(f"{counts}; median trial {table.trial_seconds:.0f} s (finetune + probes).\n")
    print("| | base | " + " | ".join(f"{k} trials: median [min, max]" for k in kinds) + " | best |")
    print("|---|---|" + "---|" * len(kinds) + "---|")
    cells = [f"{np.median(p):.4f} [{p.min():.4f}, {p.max():.4f}]" for p in (table.objective[table.kinds == k] for k in kinds)]
    print(f"| objective | {table.base_objective:.4f} | " + " | ".join(cells) + f" | {table.objective.max():.4f} |\n")


def report_probes(table: Table) -> None:
    """Which probe the mixture moves: each probe's spread over the table and how much of it a
    linear model of the weights explains out of fold (a probe it cannot explain is noise)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    print("## Probes: spread over the table and what the mixture explains (ridge, 5-fold held-out R^2)\n")
    print("| probe | sd over trials | held-out R^2 |")
    print("|---|---|---|")
    for i, probe in enumerate(table.probes):
        y = table.scores[:, i]
        predicted = cross_val_predict(RidgeCV(alphas=np.logspace(-6, 2, 20)), table.weights, y,
                                      cv=KFold(5, shuffle=True, random_state=0))
        r2 = 1 - np.sum((y - predicted) ** 2) / np.sum((y - y.mean()) ** 2)
        print(f"| {probe} | {y.std():.4f} | {r2:.3f} |")
    print()


def report_surrogates(table: Table) -> dict[str, object]:
    print("## Surrogates of objective(mixture), fitted to the table\n")
    print("| surrogate | held-out R^2 (5-fold) | held-out Spearman | held-out RMSE | noise sd it fitted | "
          "best known (its max) |")
    print("|---|---|---|---|---|---|")
    fitted = {}
    rng = np.random.default_rng(0)
    for make in SURROGATES:
        r2, rho, rmse = cross_validate(make, table.weights, table.objective)
        model = make().fit(table.weights, table.objective)
        best, where = best_known(model, table, rng)
        fitted[make.name] = (model, best, where, rmse)
        noise = f"{model.noise_sd():.4f}" if hasattr(model, "noise_sd") else "-"
        print(f"| {make.name} | {r2:.3f} | {rho:.3f} | {rmse:.4f} | {noise} | {best:.4f} |")
    print()
    for name, (_, best, where, _) in fitted.items():
        mix = ", ".join(f"{f} {w:.2f}" for f, w in sorted(zip(table.families, where), key=lambda p: -p[1]) if w >= 0.01)
        print(f"- {name} maximum {best:.4f} at: {mix}")
    print()
    return fitted


def report_samplers(table: Table, fitted: dict, samplers: list[str], seeds: int, n_trials: int, noise_sd: float,
                    surrogates: list[str], first_seed: int = 0) -> None:
    """Each sampler replayed with seeds first_seed .. first_seed + seeds - 1 (so that processes can
    share the seeds of one comparison); the trials each seed took to 95% of the gain are printed
    after the table, for pooling such runs."""
    if not set(fitted) & set(surrogates):  # --surrogates none: only the other reports
        return
    seed_range = range(first_seed, first_seed + seeds)
    print(f"## Samplers replayed ({seeds} seeds from {first_seed}, {n_trials} trials, noise sd {noise_sd:.4f})\n")
    for name, (model, best, _, _) in fitted.items():
        if name not in surrogates:
            continue
        threshold = table.base_objective + 0.95 * (best - table.base_objective)
        print(f"### on the {name} surrogate: best known {best:.4f}, base {table.base_objective:.4f}, "
              f"95% of the gain = {threshold:.4f}\n")
        print("| sampler | " + " | ".join(f"best after {m}" for m in MILESTONES if m <= n_trials)
              + " | trials to 95% of the gain (median) | seconds per replay |")
        print("|---|" + "---|" * (sum(m <= n_trials for m in MILESTONES) + 2))
        per_seed = {}
        for sampler in samplers:
            start = time.perf_counter()
            runs = [replay(sampler, s, lambda w: float(model.predict(w)[0]), noise_sd, table, n_trials) for s in seed_range]
            seconds = (time.perf_counter() - start) / seeds
            cells = [median_interval([np.max(r.true[:m]) for r in runs]) for m in MILESTONES if m <= n_trials]
            per_seed[sampler] = [trials_to_reach(r.true, threshold) for r in runs]
            reach = fmt_trials(per_seed[sampler], n_trials)
            print(f"| {sampler} | " + " | ".join(cells) + f" | {reach} | {seconds:.1f} |", flush=True)
        print("\nTrials to 95% of the gain, seed by seed (- : not within the replay): " + "; ".join(
            f"{sampler} " + ", ".join(f"{v:.0f}" if math.isfinite(v) else "-" for v in values)
            for sampler, values in per_seed.items()))
        share, median = random_search_reach(model, table, threshold)
        print(f"\nRandom search without replaying it: a flat Dirichlet draw lands above {threshold:.4f} with "
              f"probability {share:.5f} (400k draws on the surrogate), so random search's median trials to get "
              f"there are ln 2 / p = {median:.0f}.\n")


def random_search_reach(model, table: Table, threshold: float, draws: int = 400_000) -> tuple[float, float]:
    """The share of flat Dirichlet draws (random search's proposals) whose true objective reaches
    `threshold`, and random search's median number of trials to its first such draw (geometric:
    ln 2 / p, infinite for none): exact where a replay of hundreds of trials would be needed."""
    weights = np.random.default_rng(7).dirichlet(np.ones(len(table.families)), draws)
    share = float(np.mean(model.predict(weights) >= threshold))
    return share, math.log(2) / share if share else math.inf


def searched_runs(table: Table) -> list[int]:
    """The runs a sampler other than random proposed trials in: real end-to-end searches."""
    return sorted({int(r) for r in table.runs[table.kinds != "random"]})


def sampler_of(table: Table, run: int) -> str:
    """The sampler that proposed a searched run's trials after its start-up draws."""
    return str(table.kinds[(table.runs == run) & (table.kinds != "random")][0])


def report_proposals(table: Table) -> None:
    """What each real search proposed after its start-up draws, against the random trials of the
    other runs (the seed mixture left out): one-sided Mann-Whitney tests (scipy)."""
    from scipy.stats import mannwhitneyu

    searched = searched_runs(table)
    draws = table.objective[~np.isin(table.runs, searched) & (table.kinds == "random") & (table.numbers > 0)]
    if not searched or len(draws) < 2:
        return
    high = float(np.percentile(draws, 75))
    groups = {"random draws": draws}
    for run in searched:
        if run in table.pruned_runs:  # its completed trials are the pruner's survivors, not its proposals
            continue
        mask = (table.runs == run) & (table.kinds != "random")
        groups[f"{sampler_of(table, run)} (run {run})"] = table.objective[mask][np.argsort(table.numbers[mask])]
    print(f"## What each real search proposed after its start-up draws (share above the random draws' upper "
          f"quartile, {high:.4f})\n")
    print("| proposals | trials | median | mean | mean of the last 10 | share above the quartile | "
          "Mann-Whitney p, greater than random |")
    print("|---|---|---|---|---|---|---|")
    for name, values in groups.items():
        p = "-" if name == "random draws" else f"{mannwhitneyu(values, draws, alternative='greater').pvalue:.2f}"
        print(f"| {name} | {len(values)} | {np.median(values):.4f} | {values.mean():.4f} | {values[-10:].mean():.4f} | "
              f"{np.mean(values > high):.2f} | {p} |")
    print()


def report_real_runs(table: Table, fitted: dict, orderings: int = 2000) -> None:
    """The real end-to-end searches of the table (runs whose trials a sampler other than random
    proposed) against random search made of the table's real random trials: random search's trials
    are exchangeable, so every ordering of them (the seed mixture first) is a run it could have
    made. Best *observed* objective after N trials (noise and all, for both), and the GP surrogate's
    estimate of the mixture each would pick (the observed best overstates itself)."""
    model, best, _, _ = fitted["GP"]
    threshold = table.base_objective + 0.95 * (best - table.base_objective)
    searched = searched_runs(table)
    pool = np.nonzero(np.isin(table.runs, [r for r in set(table.runs.tolist()) if r not in searched]))[0]
    seed_rows = pool[table.numbers[pool] == 0]
    if not searched or len(pool) < 11:
        return
    counts = [n for n in MILESTONES if n <= len(pool)]
    print(f"## Real searches against random search made of the table's {len(pool)} random trials "
          f"({orderings} orderings)\n")
    print(f"Threshold (95% of the gain of the GP surrogate's best known {best:.4f}): {threshold:.4f}.\n")
    print("| run | " + " | ".join(f"best observed after {n} (surrogate's estimate of it)" for n in counts)
          + " | trials until an observed objective reached the threshold |")
    print("|---|" + "---|" * (len(counts) + 1))
    rng = np.random.default_rng(0)
    rest = np.setdiff1d(pool, seed_rows[:1])
    random_runs = [np.concatenate([seed_rows[:1], rng.permutation(rest)]) for _ in range(orderings)]

    def cells(order: np.ndarray) -> tuple[list[float], list[float], float]:
        observed, estimated = [], []
        for n in counts:
            pick = order[:n][np.argmax(table.objective[order[:n]])] if n <= len(order) else None
            observed.append(table.objective[pick] if pick is not None else math.nan)
            estimated.append(float(model.predict(table.weights[pick])[0]) if pick is not None else math.nan)
        return observed, estimated, trials_to_reach(table.objective[order], threshold)

    for run in searched:
        if run in table.pruned_runs:  # compared with its single-fidelity search in report_real_fidelity
            continue
        rows = np.nonzero(table.runs == run)[0]
        order = rows[np.argsort(table.numbers[rows])]
        observed, estimated, reach = cells(order)
        shown = [f"{o:.4f} ({e:.4f})" if math.isfinite(o) else "-" for o, e in zip(observed, estimated)]
        reached = f"{reach:.0f}" if math.isfinite(reach) else f">{len(rows)}"
        print(f"| {sampler_of(table, run)} (run {run}, {len(rows)} trials) | " + " | ".join(shown) + f" | {reached} |")
    results = [cells(order) for order in random_runs]
    shown = []
    for i in range(len(counts)):
        obs = np.array([r[0][i] for r in results])
        est = np.array([r[1][i] for r in results])
        shown.append(f"{np.median(obs):.4f} [{np.percentile(obs, 2.5):.4f}, {np.percentile(obs, 97.5):.4f}] "
                     f"({np.median(est):.4f})")
    reach = [r[2] for r in results]
    print("| random (median [2.5%, 97.5%] over orderings) | " + " | ".join(shown) + f" | "
          f"{fmt_trials(reach, len(pool))} |\n")


@dataclass
class Finished:
    """One trial of a real search as its result came in."""

    single_seconds: float  # worker-seconds so far as a single-fidelity search would spend them
    spent_seconds: float  # worker-seconds so far as this search spent them
    seconds: float  # this trial's finetune, milestone and probe seconds
    objective: float | None  # None: the pruner stopped it
    weights: np.ndarray | None


def run_compute(run: Path, families: list[str]) -> list[Finished]:
    """A real search's trials in the order their results came in (several workers finish out of
    order). Worker-seconds add up every trial's recorded finetune, probe and milestone seconds, so
    two workers sharing the cores count as they would in sequence; a single-fidelity search spends
    no milestone seconds."""
    import optuna

    from soupkit.search.study import close_storage, default_storage, open_storage
    from soupkit.study_record import TrialRecord, stopped_by_pruner

    storage = open_storage(default_storage(run))
    trials = [t for t in optuna.load_study(study_name=None, storage=storage).get_trials(deepcopy=False)
              if t.state.name == "COMPLETE" or stopped_by_pruner(t)]
    close_storage(storage)
    single = spent = 0.0
    out = []
    for t in sorted(trials, key=lambda t: t.datetime_complete):
        record = TrialRecord.of(t)
        seconds = record.seconds
        own = sum(seconds.get(k, 0.0) for k in ("finetune", "probe", "milestones"))
        spent += own
        single += seconds.get("finetune", 0.0) + seconds.get("probe", 0.0)
        complete = t.state.name == "COMPLETE"
        weights = np.array([record.mixture.get(f, 0.0) for f in families]) if complete else None
        out.append(Finished(single, spent, own, record.objective if complete else None,
                            weights / weights.sum() if complete else None))
    return out


def picks(finished: list[Finished], model) -> list[tuple[float, float, float]]:
    """After each trial: (worker-seconds spent, best observed objective so far, the GP surrogate's
    estimate of that mixture): what the search would hand over if stopped there."""
    out, best, estimate = [], -math.inf, math.nan
    for f in finished:
        if f.objective is not None and f.objective > best:
            best, estimate = f.objective, float(model.predict(f.weights)[0])
        out.append((f.spent_seconds, best, estimate))
    return out


def report_real_fidelity(table: Table, fitted: dict, runs: list[Path]) -> None:
    """Each real search with a pruner against the real single-fidelity search of the same sampler
    (same recipe, seed and start-up draws): worker-minutes until it reaches that search's result,
    read two ways: its best observed objective, and the GP surrogate's estimate of the mixture it
    picked (the observed best overstates itself: winner's curse). Then when each run's best rose."""
    model = fitted["GP"][0]
    singles = [r for r in searched_runs(table) if r not in table.pruned_runs]
    if not singles or not table.pruned_runs:
        return
    pairs = [(next((r for r in singles if sampler_of(table, r) == sampler_of(table, run)), singles[0]), run)
             for run in sorted(table.pruned_runs)]
    finished = {}
    for run in dict.fromkeys(r for pair in pairs for r in pair):
        rows = run_compute(runs[run], table.families)
        # a single-fidelity search is charged what it would spend without its milestone passes
        finished[run] = rows if run in table.pruned_runs else [replace(f, spent_seconds=f.single_seconds) for f in rows]
    traces = {run: picks(rows, model) for run, rows in finished.items()}

    def label(run: int) -> str:
        return f"{sampler_of(table, run)} (run {run}, {'with the pruner' if run in table.pruned_runs else 'single fidelity'})"

    def reach(trace: list[tuple[float, float, float]], column: int, target: float) -> str:
        minutes = next((row[0] / 60 for row in trace if row[column] >= target - 1e-12), math.inf)
        return f"{minutes:.0f}" if math.isfinite(minutes) else "not reached"

    def median_seconds(rows: list[Finished], stopped: bool) -> str:
        values = [f.seconds for f in rows if (f.objective is None) == stopped]
        return f"{np.median(values):.0f} [{min(values):.0f}, {max(values):.0f}]" if values else "-"

    print("## Real searches with a pruner against the real single-fidelity search of their sampler\n")
    print("Worker-minutes: every trial's finetune, milestone and probe seconds added up (two workers count as in "
          "sequence); the single-fidelity search's own milestone passes are left out of its minutes.\n")
    print("| run | trials (stopped by the pruner) | seconds per stopped trial, median [min, max] | seconds per "
          "completed trial | worker-minutes spent | best observed (surrogate's estimate of it) | minutes to the "
          "single-fidelity best observed | minutes to the single-fidelity pick's estimate |")
    print("|---|---|---|---|---|---|---|---|")
    for run in dict.fromkeys(r for pair in pairs for r in pair):
        single = next(s for s, r in pairs if run in (s, r))
        _, target_observed, target_estimate = traces[single][-1]
        rows, trace = finished[run], traces[run]
        print(f"| {label(run)} | {len(rows)} ({sum(f.objective is None for f in rows)}) | "
              f"{median_seconds(rows, True)} | {median_seconds(rows, False)} | {trace[-1][0] / 60:.0f} | "
              f"{trace[-1][1]:.4f} ({trace[-1][2]:.4f}) | {reach(trace, 1, target_observed)} | "
              f"{reach(trace, 2, target_estimate)} |")
    print("\n| run | best observed (surrogate's estimate) at the worker-minute it was first reached |")
    print("|---|---|")
    for run, trace in traces.items():
        rises = [row for i, row in enumerate(trace) if math.isfinite(row[1]) and (i == 0 or row[1] > trace[i - 1][1])]
        print(f"| {label(run)} | " + ", ".join(f"{b:.4f} ({e:.4f}) at {m / 60:.0f}" for m, b, e in rises) + " |")
    print()


STOPPED_TRIALS = ("shown", "as-values", "unseen")  # --stopped: what a sampler learns from a stopped trial


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The area dominated by `points` (both objectives maximised) above `reference`."""
    above = points[(points > reference).all(axis=1)]
    area, best_general = 0.0, reference[1]
    for domain, general in sorted(above.tolist(), key=lambda p: -p[0]):  # sweep down the domain axis
        if general > best_general:
            area += (domain - reference[0]) * (general - best_general)
            best_general = general
    return area


def report_design(table: Table, fitted: dict, spaces: list[str], startups: list[int], seeds: int, n_trials: int,
                  noise_sd: float) -> None:
    """The GP sampler under other parametrisations of the simplex and start-up counts."""
    print(f"## The GP sampler's design: parametrisation and start-up trials ({seeds} seeds, {n_trials} trials)\n")
    columns = [m for m in MILESTONES if m <= n_trials]
    print("| surrogate | space | sampler | start-up | " + " | ".join(f"best after {m}" for m in columns)
          + " | trials to 95% of the gain |")
    print("|---|---|---|---|" + "---|" * (len(columns) + 1))
    for name, (model, best, _, _) in fitted.items():
        threshold = table.base_objective + 0.95 * (best - table.base_objective)
        for space_name in spaces:
            # other start-up counts for soupkit's own space only (each replay of the GP costs seconds)
            counts = startups if space_name == "neglog" else [10]
            for sampler, startup in [("random", 10)] + [("gp", k) for k in counts]:
                runs = [replay(sampler, s, lambda w: float(model.predict(w)[0]), noise_sd, table, n_trials,
                               space_name=space_name, startup=startup) for s in range(seeds)]
                cells = [median_interval([np.max(r.true[:m]) for r in runs]) for m in columns]
                reach = fmt_trials([trials_to_reach(r.true, threshold) for r in runs], n_trials)
                print(f"| {name} | {space_name} | {sampler} | {startup if sampler == 'gp' else '-'} | "
                      + " | ".join(cells) + f" | {reach} |", flush=True)
    print()


def report_pareto(table: Table, samplers: list[str], seeds: int, n_trials: int) -> None:
    """Two objectives (DOMAIN probes against the rest): hypervolume above the base model."""
    domain_cols = [table.probes.index(p) for p in DOMAIN]
    general_cols = [i for i in range(len(table.probes)) if i not in domain_cols]
    targets = [table.scores[:, domain_cols].mean(axis=1), table.scores[:, general_cols].mean(axis=1)]
    models = [GPSurrogate().fit(table.weights, y) for y in targets]
    noise = np.array([cross_validate(GPSurrogate, table.weights, y)[2] for y in targets])  # what each cannot explain
    base = np.array([np.mean([table.base_scores[table.probes[i]] for i in cols]) for cols in (domain_cols, general_cols)])
    table_hv = hypervolume(np.column_stack(targets), base)
    print(f"## Two objectives: domain = {' + '.join(DOMAIN)}, general = the other probes "
          f"({seeds} seeds, {n_trials} trials)\n")
    print(f"GP surrogate per objective, noise sd (held-out RMSE) {noise[0]:.4f} / {noise[1]:.4f}; reference point = the base model "
          f"({base[0]:.4f}, {base[1]:.4f}); hypervolume of the whole table's measured front: {table_hv * 1e4:.2f} "
          "(x 1e-4).\n")
    checkpoints = [m for m in (20, 40, 60) if m <= n_trials]
    print("| sampler | " + " | ".join(f"hypervolume after {m} (x 1e-4)" for m in checkpoints) + " |")
    print("|---|" + "---|" * len(checkpoints))

    def objective(w):
        return np.array([m.predict(w)[0] for m in models])

    for sampler in samplers:
        runs = [replay(sampler, s, objective, noise, table, n_trials, directions=2) for s in range(seeds)]
        cells = [median_interval([hypervolume(r.true[:m], base) * 1e4 for r in runs]) for m in checkpoints]
        print(f"| {sampler} | " + " | ".join(cells) + " |", flush=True)
    print()


def report_workers(table: Table, fitted: dict, samplers: list[str], workers: list[int], seeds: int,
                   n_trials: int, noise_sd: float) -> None:
    """Several workers on one study: each asks while the others' trials run."""
    model, best = fitted["GP"][:2]
    threshold = table.base_objective + 0.95 * (best - table.base_objective)
    print(f"## Workers on one study (GP surrogate, {seeds} seeds, {n_trials} trials in all)\n")
    print(f"A near-duplicate is a proposal within L1 distance {NEAR} of an earlier or running one.\n")
    print("| sampler | workers | best after " + str(n_trials) + " | trials to 95% of the gain | near-duplicates per run |")
    print("|---|---|---|---|---|")
    for sampler in samplers:
        for k in workers:
            runs = [replay(sampler, s, lambda w: float(model.predict(w)[0]), noise_sd, table, n_trials, workers=k)
                    for s in range(seeds)]
            reach = fmt_trials([trials_to_reach(r.true, threshold) for r in runs], n_trials)
            dups = np.mean([r.near_duplicates for r in runs])
            print(f"| {sampler} | {k} | {median_interval([r.true.max() for r in runs])} | {reach} | {dups:.1f} |",
                  flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, help="run (or resume) the searches that build the table in this folder")
    parser.add_argument("--table", help="the run folder that holds the table's study; several, comma-separated, "
                        "pool their trials (the recorded table and real end-to-end searches of the same recipe)")
    parser.add_argument("--samplers", default="gp,tpe,random")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="the samplers replay's first seed (split the "
                        "seeds of one comparison over processes)")
    parser.add_argument("--drop", default="", help="probes left out of the objective, e.g. clustering")
    parser.add_argument("--noise", type=float, help="sd of one trial's objective (bench/trial_noise.py): the "
                        "replay's noise and the GP surrogate's noise floor; default: no floor, the GP's held-out RMSE")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--pruners", default="", help="also replay pruners, e.g. successive-halving,hyperband,median")
    parser.add_argument("--stopped", default="shown", help="in the --pruners replay, what the sampler learns "
                        "from a stopped trial: shown (as soupkit search does), as-values, unseen; comma-separated")
    parser.add_argument("--milestone-items", default="", help="in the --pruners replay, only the milestones "
                        "that scored these shares of the probe items, e.g. 0.25 (default: every kind the table holds)")
    parser.add_argument("--spaces", default="", help="also replay the GP under these parametrisations: neglog,stick,logratio")
    parser.add_argument("--startups", default="10", help="start-up trials of the GP in the --spaces replay, e.g. 5,10,20")
    parser.add_argument("--pareto", action="store_true", help="also replay the two-objective form")
    parser.add_argument("--surrogates", default="GP,quadratic", help="replay the samplers on these surrogates (none: skip that replay)")
    parser.add_argument("--workers", default="", help="also replay several workers, e.g. 1,2,4")
    args = parser.parse_args()
    unknown = sorted(set(args.stopped.split(",")) - set(STOPPED_TRIALS))
    if unknown:
        parser.error(f"--stopped: {', '.join(unknown)} is not one of {', '.join(STOPPED_TRIALS)}")
    if args.record:
        record_table(args.record)
    if not args.table:
        return
    GPSurrogate.noise_floor = args.noise or 0.0
    table = load_table([Path(run) for run in args.table.split(",")], tuple(args.drop.split(",")) if args.drop else ())
    if args.drop:
        print(f"Objective: the mean of the probes but {args.drop}.\n")
    report_table(table)
    report_probes(table)
    fitted = report_surrogates(table)
    # one trial's noise: measured by bench/trial_noise.py (--noise), else what the GP cannot explain
    noise_sd = args.noise if args.noise is not None else fitted["GP"][3]
    samplers = args.samplers.split(",")
    report_proposals(table)
    report_real_runs(table, fitted)
    report_real_fidelity(table, fitted, [Path(run) for run in args.table.split(",")])
    report_samplers(table, fitted, samplers, args.seeds, args.trials, noise_sd, args.surrogates.split(","),
                    args.first_seed)
    if args.spaces:
        report_design(table, fitted, args.spaces.split(","), [int(k) for k in args.startups.split(",")], args.seeds,
                      args.trials, noise_sd)
    if args.pruners:
        report_fidelity(table, fitted, [s for s in samplers if s != "random"], args.pruners.split(","), args.seeds,
                        noise_sd, args.stopped.split(","),
                        [float(f) for f in args.milestone_items.split(",")] if args.milestone_items else None)
    if args.pareto:
        report_pareto(table, samplers, args.seeds, min(args.trials, 40))
    if args.workers:
        report_workers(table, fitted, [s for s in samplers if s != "random"],
                       [int(k) for k in args.workers.split(",")], args.seeds, 40, noise_sd)


if __name__ == "__main__":
    sys.exit(main())
