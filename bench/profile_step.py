"""Where a training step's time goes: `all` against a warm-cache `top:<k>`, by profiler.

    python bench/profile_step.py [--base bundled] [--recipe default] [--train top:2] [--steps 10]
        [--torch] [--rows 25] [--pause SECONDS] [--probe]

For each setting (`all` first), loads the base, runs `finetune_on_mixture` once for --steps steps
to fill the trunk cache (a `top:<k>` setting), then runs it again under cProfile (or with --torch,
torch.profiler's operator table) and prints the median step time and the top functions by own
time. The cache lives in a fresh $SOUPKIT_HOME under a temporary folder.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None)
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--train", default="all,top:2", help="Comma-separated settings, profiled in order.")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="Seconds between the filling run and the profiled one (a search's trials are minutes apart).")
    parser.add_argument("--probe", action="store_true",
                        help="Encode the trained texts as a probe pass does (inference mode) between the two runs.")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--torch", action="store_true", help="torch.profiler operator table instead of cProfile")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()

    import torch

    from soupkit.base_model import load_model, pick_device, resolve_base, use_bf16
    from soupkit.config import load_recipe, seed_mixture_of, with_overrides
    from soupkit.data.load import load_families
    from soupkit.models.fetch import same_model
    from soupkit.train.finetune import base_weights, finetune_on_mixture

    recipe = load_recipe(args.recipe)
    recipe = with_overrides(recipe, {"base": ("--base", args.base)}).for_base(same_model)
    recipe = with_overrides(recipe, {"finetune.steps": ("--steps", args.steps),
                                     "finetune.batch_size": ("--batch-size", args.batch_size)})
    recipe = recipe.model_copy(update={"base": resolve_base(recipe.base)})
    os.environ["SOUPKIT_HOME"] = tempfile.mkdtemp(prefix="profile-step-home-")
    families = load_families(recipe)
    mixture = seed_mixture_of(recipe)
    weights = mixture.normalised() if mixture else {name: 1 / len(families) for name in families}
    device = pick_device()
    bf16 = use_bf16(device, recipe.finetune.bf16)
    print(f"base {recipe.base}, {args.steps} steps of batch {recipe.finetune.batch_size}, bf16 {bf16}, "
          f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
    scratch = Path(tempfile.mkdtemp(prefix="profile-step-"))
    for setting in [s for s in dict.fromkeys(args.train.split(",")) if s]:
        spec_recipe = with_overrides(recipe, {"finetune.train": ("--train", setting)})
        model = load_model(spec_recipe.base, device)
        state = base_weights(model, spec_recipe.finetune)

        def once(label):
            model.load_state_dict(state)
            stamps = [time.perf_counter()]
            finetune_on_mixture(model, families, weights, spec_recipe.finetune, scratch / label, recipe.seed,
                                bf16, on_step=lambda s, v: stamps.append(time.perf_counter()))
            return statistics.median(b - a for a, b in zip(stamps, stamps[1:]))

        warm = once(f"{setting}-fill".replace(":", ""))
        if args.probe:
            from soupkit.probes.encode import encode_texts
            texts = [e.anchor for f in families.values() for e in f.train[:64]]
            encode_texts(model, texts, "", 32, bf16)
        time.sleep(args.pause)
        if args.torch:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step = once(f"{setting}-prof".replace(":", ""))
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
        else:
            profiler = cProfile.Profile()
            profiler.enable()
            step = once(f"{setting}-prof".replace(":", ""))
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.rows)
            table = out.getvalue()
        print(f"\n=== {setting}: median step {warm:.3f}s unprofiled (first run), {step:.3f}s profiled")
        print(table)
        del model, state


if __name__ == "__main__":
    main()
