"""Would an earlier, cheaper milestone let a pruner halve the search's time? Real trials' mixtures
finetuned again, scored at early steps, against the final objectives those trials recorded.

    T=runs/gp-search,runs/botorch-search,runs/sh-search,runs/sh-search-2      # trials with quarter-item milestones
    python bench/early_milestones.py --table $T --steps 2,4,6 --scores runs/early.jsonl --shard 0/2 &
    python bench/early_milestones.py --table $T --steps 2,4,6 --scores runs/early.jsonl --shard 1/2
    python bench/early_milestones.py --table runs/sampler-table-2,$T --scores runs/early.jsonl --replay gp

A trial is deterministic for its mixture and the recipe's seed (the same batches in the same
order; a milestone puts the model back as it found it), so the score a re-run gives at step s is
the milestone the original trial passed through on its way to its recorded final objective. A
re-run stops after its last milestone step: it costs those steps and their probe passes, not a
trial. Recording is resumable (mixtures already in --scores are skipped) and splits over
processes with --shard i/n.

The report: per milestone (the re-run steps, and the step the table's trials recorded
themselves), its rank correlation with the final objective, and for a successive-halving cut
keeping the best half, third or quarter there, how many of the top-decile trials it keeps and
how fast it finds them against running every trial to the end (`top_trials_kept` in
bench/surrogates.py, which this reads the table and the cost model from): halving the wall time
needs 2x, and the share of top-decile trials a milestone must keep for that is printed beside it.
Trials of --table that were not re-run (the first folder above: its milestones scored all the
items) only join the GP surrogates of `--replay`, which replays each milestone as successive
halving's one rung against single fidelity, as bench/samplers.py --pruners does for step 8.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from surrogates import GPSurrogate, Table, load_table, report_fidelity, top_trials_kept  # bench/surrogates.py

# the share of trials a cut keeps: successive halving's first rung with reduction factor 2, 3, 4; 1/9 is two rungs of 3
KEEPS = (1 / 2, 1 / 3, 1 / 4, 1 / 9)


class _Enough(Exception):
    """Raised from the step callback after the last milestone: the rest of the finetune is not needed."""


def trial_key(run: Path, number: int) -> str:
    return f"{run}#{number}"


def completed_trials(runs: list[Path]) -> list[tuple[Path, int, dict[str, float]]]:
    """(run folder, trial number, mixture) of every completed trial, in load_table's order."""
    import optuna

    from soupkit.search.study import close_storage, default_storage, open_storage
    from soupkit.study_record import TrialRecord

    out = []
    for run in runs:
        storage = open_storage(default_storage(run))
        for t in optuna.load_study(study_name=None, storage=storage).get_trials(deepcopy=False):
            if t.state.name == "COMPLETE":
                out.append((run, t.number, TrialRecord.of(t).mixture))
        close_storage(storage)
    return out


def recorded_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["trial"] for line in path.read_text().splitlines() if line.strip()}


def record(runs: list[Path], steps: list[int], fraction: float, scores: Path, shard: int, shards: int) -> None:
    """Finetune this shard's mixtures to the last of `steps`, scoring `fraction` of the probe items at each."""
    import optuna

    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.data.load import load_recipe_families
    from soupkit.probes.score import objective_value, score_probes
    from soupkit.search.study import close_storage, default_storage, open_storage
    from soupkit.search.trial import TrialContext
    from soupkit.study_record import StudyRecord
    from soupkit.train.finetune import base_weights, finetune_on_mixture

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(default_storage(runs[0]))
    recipe = StudyRecord.of(optuna.load_study(study_name=None, storage=storage)).recipe()
    close_storage(storage)
    recipe = recipe.model_copy(update={"search": recipe.search.model_copy(update={"milestone_fraction": fraction})})
    trials = completed_trials(runs)
    order = np.random.default_rng(0).permutation(len(trials))  # any prefix of the work is a fair sample
    done = recorded_keys(scores)
    todo = [trials[i] for i in order[shard::shards] if trial_key(*trials[i][:2]) not in done]
    print(f"shard {shard}/{shards}: {len(todo)} mixtures to re-run to step {max(steps)}", flush=True)

    device = pick_device()
    model = load_model(recipe.base, device)
    families, probes = load_recipe_families(recipe, None, log=lambda _: None)
    bf16 = use_bf16(device, recipe.finetune.bf16)
    ctx = TrialContext(recipe, families, probes, model, base_weights(model, recipe.finetune), Path("."), bf16, "")
    for run, number, mixture in todo:
        values, seconds = {}, {}
        start = time.perf_counter()

        def on_step(step: int, _loss: float, values=values, seconds=seconds) -> None:
            if step in steps:
                t0 = time.perf_counter()
                values[step] = objective_value(score_probes(model, ctx.milestone_probes, ctx.probe_settings),
                                               recipe.objective.weights)
                model.train()
                seconds[step] = round(time.perf_counter() - t0, 2)
            if step == max(steps):
                raise _Enough

        ctx.reset_model()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                finetune_on_mixture(model, families, mixture, recipe.finetune, Path(tmp) / "m", recipe.seed, bf16,
                                    on_step=on_step)
            except _Enough:
                pass
        line = {"trial": trial_key(run, number), "fraction": fraction, "milestones": values,
                "milestone_seconds": seconds, "seconds": round(time.perf_counter() - start, 2)}
        with scores.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"{trial_key(run, number)}: " + ", ".join(f"step {s} {v:.4f}" for s, v in values.items())
              + f" ({line['seconds']:.0f} s)", flush=True)


def report(runs: list[Path], scores: Path, samplers: list[str], seeds: int, noise_sd: float) -> None:
    """The cut table over the re-run trials; with `samplers`, each milestone also replayed as
    successive halving's only rung against single fidelity (bench/samplers.py's replay, on a GP
    surrogate of every trial in `runs`)."""
    from scipy.stats import spearmanr

    if not scores.is_file():
        print(f"--scores {scores}: no such file (record the re-runs first, with --steps)", file=sys.stderr)
        sys.exit(2)
    lines = [json.loads(line) for line in scores.read_text().splitlines() if line.strip()]
    fractions = {line["fraction"] for line in lines}
    if len(fractions) != 1:
        print(f"--scores {scores}: milestones of several item shares {sorted(fractions)}: one file per share",
              file=sys.stderr)
        sys.exit(2)
    fraction = fractions.pop()
    by_key = {line["trial"]: line for line in lines}
    table: Table = load_table(runs)
    keys = [trial_key(runs[run], int(number)) for run, number in zip(table.runs, table.numbers)]
    rows = [i for i, k in enumerate(keys) if k in by_key]
    final = table.objective[rows]
    single = table.single_trial_seconds
    print(f"{len(rows)} of the table's {len(keys)} trials re-run ({scores}); {fraction:g} of the probe items per "
          f"milestone. Cost model (the table's medians): {table.step_seconds:.2f} s per step, a final probe pass "
          f"{table.probe_seconds:.1f} s, a single-fidelity trial {single:.0f} s.\n")

    # name -> (step, the milestone's objective for every trial of the table, NaN where not scored, seconds of a pass)
    milestones: dict[str, tuple[int, np.ndarray, float]] = {}
    for step in sorted({int(s) for line in lines for s in line["milestones"]}):
        values = np.array([by_key[k]["milestones"].get(str(step), np.nan) if k in by_key else np.nan for k in keys])
        seconds = float(np.median([line["milestone_seconds"][str(step)] for line in lines
                                   if str(step) in line["milestone_seconds"]]))
        milestones[f"step {step} (re-run)"] = (step, values, seconds)
    for (step, share), values in table.milestones.items():
        if share == fraction:
            milestones[f"step {step} (recorded by the trial)"] = (step, values, table.milestone_seconds[(step, share)])
            rerun = milestones.get(f"step {step} (re-run)")
            if rerun is not None:
                both = ~np.isnan(rerun[1]) & ~np.isnan(values)
                diff = np.abs(rerun[1][both] - values[both])
                print(f"Determinism: step {step} re-run against recorded on {both.sum()} trials: largest difference "
                      f"{diff.max():.2g}, median {np.median(diff):.2g}.\n")

    top = int((final >= np.quantile(final, 0.9)).sum())
    print(f"Each cut cell: top-decile trials kept (of {top}), how fast the cut finds them against single fidelity, "
          f"and the most a perfect ranking at that cost gives; 2x halves the wall time.\n")
    print("| milestone | trials | distinct scores (sd) | Spearman with the final objective | milestone pass (s) | "
          + " | ".join(f"keep 1/{round(1 / keep)}" for keep in KEEPS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(KEEPS))
    for name, (step, values, seconds) in milestones.items():
        at = values[rows]
        ok = ~np.isnan(at)
        rho = spearmanr(at[ok], final[ok]).statistic
        cells = []
        for keep in KEEPS:
            kept, rate, most = top_trials_kept(at[ok], final[ok], step, seconds, table, keep)
            reach = f"2x needs {math.ceil(2 / most * top)}" if most >= 2 else "2x out of reach"
            cells.append(f"{kept.split(' of ')[0]}: {rate:.2f}x of {most:.2f}x ({reach})")
        spread = f"{len(np.unique(np.round(at[ok], 6)))} ({np.std(at[ok]):.4f})"
        print(f"| {name} | {ok.sum()} | {spread} | {rho:.2f} | {seconds:.1f} | " + " | ".join(cells) + " |")
    print()
    if not samplers:
        return
    GPSurrogate.noise_floor = noise_sd
    fitted = {"GP": (GPSurrogate().fit(table.weights, table.objective),)}
    for name, (step, values, seconds) in milestones.items():
        print(f"### Replayed: successive halving with its one rung at {name}\n")
        one = replace(table, milestones={(step, fraction): values}, milestone_seconds={(step, fraction): seconds})
        report_fidelity(one, fitted, samplers, ["successive-halving"], seeds, noise_sd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="run folders of the same recipe, comma-separated")
    parser.add_argument("--scores", type=Path, required=True, help="JSON lines: the re-runs' milestone scores")
    parser.add_argument("--steps", help="record: milestone steps to re-run to, e.g. 2,4 (without: report)")
    parser.add_argument("--fraction", type=float, default=0.25, help="record: share of each probe's items scored")
    parser.add_argument("--shard", default="0/1", help="record: this process's share of the mixtures, i/n")
    parser.add_argument("--replay", default="", help="report: also replay each milestone as successive halving's "
                        "rung with these samplers, e.g. gp (on a GP surrogate of every trial of --table)")
    parser.add_argument("--seeds", type=int, default=8, help="report: seeds of the --replay")
    parser.add_argument("--noise", type=float, default=0.0012, help="report: sd of one trial's objective in the --replay "
                        "(bench/trial_noise.py)")
    args = parser.parse_args()
    runs = [Path(p) for p in args.table.split(",")]
    if args.steps:
        shard, shards = (int(x) for x in args.shard.split("/"))
        record(runs, sorted(int(s) for s in args.steps.split(",")), args.fraction, args.scores, shard, shards)
    else:
        report(runs, args.scores, [x for x in args.replay.split(",") if x], args.seeds, args.noise)


if __name__ == "__main__":
    main()
