"""`finetune.train: all` against `top:<k>`: step time, a whole trial, and the trunk cache's cost.

    python bench/train_top.py [--base bundled] [--recipe default] [--train all,top:2] [--steps N]
        [--batch-size N] [--seed-mixture NAME]

For each setting, in one process and on one machine: a trial as the search runs it (the recipe's
seed mixture, `finetune_on_mixture` with its checkpoint written, then the probe pass), from the
same base weights. A `top:<k>` setting runs the trial twice: cold (an empty trunk cache, so the
frozen bottom is computed and stored as texts first appear) and warm (every text cached, as in
every later trial of a search). Prints per setting the median step time, the finetune, probe and
trial seconds, the objective, and for `top:<k>` the cache's build time (cold trial - warm trial),
its texts and disk size, and after how many trials it has paid for itself against `all`; ratios
against `all` of the same run. The cache lives in a fresh $SOUPKIT_HOME under a temporary folder.
Run it with nothing else busy on the machine (NOTES.md: a second busy process slows torch 3-9x).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cold_cache import recipe_with_cold_cache  # bench/cold_cache.py: this script's folder is on the path


@dataclass
class Trial:
    label: str
    step_median: float
    finetune: float
    probe: float
    objective: float
    cache_texts: int = 0
    cache_bytes: int = 0

    @property
    def total(self) -> float:
        return self.finetune + self.probe


def run_trial(label, model, base_state, recipe, families, probes, weights, bf16, out: Path) -> Trial:
    from soupkit.models.trunk import binding_of
    from soupkit.models.trunk_cache import file_bytes
    from soupkit.probes.score import ProbeSettings, objective_value, score_probes
    from soupkit.train.finetune import finetune_on_mixture

    model.load_state_dict(base_state)
    stamps = [time.perf_counter()]
    result = finetune_on_mixture(model, families, weights, recipe.finetune, out, recipe.seed, bf16,
                                 on_step=lambda step, loss: stamps.append(time.perf_counter()))
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    start = time.perf_counter()
    scores = score_probes(model, probes, ProbeSettings.from_recipe(recipe, bf16))
    probe = time.perf_counter() - start
    trial = Trial(label, statistics.median(steps), result.seconds, probe, objective_value(scores, recipe.objective.weights))
    binding = binding_of(model)
    if binding is not None:
        trial.cache_texts = binding.cache.stats().entries
        trial.cache_bytes = file_bytes(binding.cache.path)
    return trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="Base model (default: the recipe's; bundled MiniLM).")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--train", default="all,top:2", help="Comma-separated settings; `all` is always run first.")
    parser.add_argument("--steps", type=int, default=None, help="Finetune steps (default: the recipe's).")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size (default: the recipe's).")
    parser.add_argument("--seed-mixture", default=None, help="Mixture to train (default: the recipe's seed mixture).")
    args = parser.parse_args()

    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.config import load_mixture, seed_mixture_of, with_overrides
    from soupkit.data.load import load_recipe_families
    from soupkit.train.finetune import base_weights

    recipe = recipe_with_cold_cache(args, "train-top-home-")  # a cold trunk cache
    settings = ["all"] + [s for s in dict.fromkeys(args.train.split(",")) if s and s != "all"]
    families, probes = load_recipe_families(recipe)
    mixture = load_mixture(args.seed_mixture) if args.seed_mixture else seed_mixture_of(recipe)
    weights = mixture.normalised() if mixture else {name: 1 / len(families) for name in families}
    device = pick_device()
    bf16 = use_bf16(device, recipe.finetune.bf16)
    print(f"base {recipe.base}, recipe {recipe.name}, {recipe.finetune.steps} steps of batch "
          f"{recipe.finetune.batch_size}, bf16 {bf16}, device {device}, torch threads "
          f"{__import__('torch').get_num_threads()}")

    trials: list[Trial] = []
    scratch = Path(tempfile.mkdtemp(prefix="train-top-"))
    for setting in settings:
        spec_recipe = with_overrides(recipe, {"finetune.train": ("--train", setting)})
        model = load_model(spec_recipe.base, device)
        base_state = base_weights(model, spec_recipe.finetune)
        runs = ("cold", "warm") if setting != "all" else ("",)
        for run in runs:
            label = f"{setting} {run}".strip()
            trials.append(run_trial(label, model, base_state, spec_recipe, families, probes, weights, bf16,
                                    scratch / label.replace(" ", "-").replace(":", "")))
            print(f"  {label}: done in {trials[-1].total:.1f}s", flush=True)
        del model, base_state

    full = trials[0]
    print(f"\n{'setting':<12} {'step s':>8} {'x all':>6} {'finetune s':>11} {'probe s':>8} {'x all':>6} "
          f"{'trial s':>8} {'x all':>6} {'objective':>10}")
    for t in trials:
        print(f"{t.label:<12} {t.step_median:8.3f} {t.step_median / full.step_median:6.2f} {t.finetune:11.1f} "
              f"{t.probe:8.1f} {t.probe / full.probe:6.2f} {t.total:8.1f} {t.total / full.total:6.2f} "
              f"{t.objective:10.4f}")
    for cold, warm in zip(trials[1::2], trials[2::2]):
        build = cold.total - warm.total
        saved = full.total - warm.total
        if cold.total <= full.total:
            payback = "in its first trial"
        elif saved > 0:
            payback = f"after {math.ceil((cold.total - full.total) / saved) + 1} trials"
        else:
            payback = "never (a warm trial is no faster than all)"
        print(f"{cold.label.split()[0]}: cache built in {build:.1f}s (cold - warm trial), {warm.cache_texts} texts, "
              f"{warm.cache_bytes / 2**20:.1f} MB on disk; paid for itself {payback}")


if __name__ == "__main__":
    main()
