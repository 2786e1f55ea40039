"""How noisy is one trial? The same mixture finetuned with several training seeds, scored on the
recipe's probes: the spread a search cannot see past, against the spread between mixtures.

    python bench/trial_noise.py --table runs/sampler-table [--seeds 1,2,3,4] [--trials 0,BEST]

A search trains every trial with the recipe's seed, so a mixture's objective is one draw of
(batches sampled, their order): two mixtures whose objectives differ by less than the seed-to-seed
spread are not told apart by one trial each, whatever the sampler. Mixtures measured: the recipe's
seed mixture (trial 0) and the table's best trial (BEST), or the trial numbers given. Prints, per
mixture, the objective of each seed, their mean and standard deviation; then the standard
deviation of the objective over the table's random trials (different mixtures) for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from soupkit.base_model import load_model, pick_device, use_bf16
from soupkit.data.load import load_recipe_families
from soupkit.probes.score import ProbeSettings, objective_value, score_probes
from soupkit.search.study import default_storage, open_storage, search_study_names
from soupkit.study_record import StudyRecord, TrialRecord
from soupkit.train.finetune import base_weights, finetune_on_mixture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="a run folder of `soupkit search`")
    parser.add_argument("--seeds", default="1,2,3,4", help="training seeds besides the recipe's own")
    parser.add_argument("--trials", default="0,BEST", help="trial numbers whose mixtures to repeat")
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(default_storage(args.table))
    study = optuna.load_study(study_name=search_study_names(storage)[0], storage=storage)  # not its ingredients'
    recipe = StudyRecord.of(study).recipe()
    done = {t.number: TrialRecord.of(t) for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"}
    best = max(done.values(), key=lambda r: r.objective).number
    numbers = [best if n == "BEST" else int(n) for n in args.trials.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    device = pick_device()
    model = load_model(recipe.base, device)
    families, probes = load_recipe_families(recipe, None, log=lambda _: None)
    base_state = base_weights(model, recipe.finetune)
    bf16 = use_bf16(device, recipe.finetune.bf16)
    settings = ProbeSettings.from_recipe(recipe, bf16)

    print(f"study {args.table}: {len(done)} complete trials; recipe seed {recipe.seed}, extra seeds {seeds}\n")
    print("| trial | mixture | objective per seed (recipe's seed first) | mean | sd |")
    print("|---|---|---|---|---|")
    for number in numbers:
        record = done[number]
        values = [record.objective]
        for seed in seeds:
            model.load_state_dict(base_state)
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                finetune_on_mixture(model, families, record.mixture, recipe.finetune, Path(tmp) / "m", seed, bf16)
            values.append(objective_value(score_probes(model, probes, settings), recipe.objective.weights))
            print(f"  trial {number} seed {seed}: {values[-1]:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
        mix = ", ".join(f"{f} {w:.2f}" for f, w in sorted(record.mixture.items(), key=lambda p: -p[1]) if w >= 0.05)
        print(f"| {number} | {mix} | {' / '.join(f'{v:.4f}' for v in values)} | {statistics.mean(values):.4f} | "
              f"{statistics.stdev(values):.4f} |", flush=True)
    between = [r.objective for r in done.values() if r.seeded is None]
    print(f"\nbetween mixtures (the table's {len(between)} trials besides the seed mixture, one seed each): sd "
          f"{statistics.stdev(between):.4f}, range {min(between):.4f} to {max(between):.4f}")


if __name__ == "__main__":
    main()
