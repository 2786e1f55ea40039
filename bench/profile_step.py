"""Where a training step's time goes: `all` against a warm-cache `top:<k>`, by profiler.

    python bench/profile_step.py [--base bundled] [--recipe default] [--train top:2] [--steps 10]
        [--torch] [--rows 25] [--pause SECONDS] [--probe] [--interleave]

For each setting (`all` first), loads the base, runs `finetune_on_mixture` once for --steps steps
to fill the trunk cache (a `top:<k>` setting), then runs it again under cProfile (or with --torch,
torch.profiler's operator table) and prints the median step time and the top functions by own
time. With --interleave there is no profiler: the settings' second runs take turns step by step,
so load from other processes falls on each alike, and the medians and ratios against the first
setting are the numbers to compare. The cache lives in a fresh $SOUPKIT_HOME under a temporary folder.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from cold_cache import recipe_with_cold_cache  # bench/cold_cache.py: this script's folder is on the path


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
    parser.add_argument("--interleave", action="store_true",
                        help="No profiler: after the filling runs, the settings take turns step by step (one "
                             "thread each, one computing at a time), so a busy machine slows them alike")
    args = parser.parse_args()

    import torch

    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.config import seed_mixture_of, with_overrides
    from soupkit.data.load import load_families
    from soupkit.models.trunk import binding_of
    from soupkit.train.finetune import base_weights, finetune_on_mixture

    recipe = recipe_with_cold_cache(args, "profile-step-home-")  # a cold trunk cache
    families = load_families(recipe)
    mixture = seed_mixture_of(recipe)
    weights = mixture.normalised() if mixture else {name: 1 / len(families) for name in families}
    device = pick_device()
    bf16 = use_bf16(device, recipe.finetune.bf16)
    print(f"base {recipe.base}, {args.steps} steps of batch {recipe.finetune.batch_size}, bf16 {bf16}, "
          f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
    scratch = Path(tempfile.mkdtemp(prefix="profile-step-"))
    turns = []
    for setting in [s for s in dict.fromkeys(args.train.split(",")) if s]:
        spec_recipe = with_overrides(recipe, {"finetune.train": ("--train", setting)})
        model = load_model(spec_recipe.base, device)
        state = base_weights(model, spec_recipe.finetune)

        def once(label, model=model, state=state, spec=spec_recipe.finetune):
            model.load_state_dict(state)
            stamps = [time.perf_counter()]
            finetune_on_mixture(model, families, weights, spec, scratch / label, recipe.seed,
                                bf16, on_step=lambda s, v: stamps.append(time.perf_counter()))
            return statistics.median(b - a for a, b in itertools.pairwise(stamps))

        warm = once(f"{setting}-fill".replace(":", ""))
        if args.probe:
            from soupkit.probes.encode import encode_texts
            texts = [e.anchor for f in families.values() for e in f.train[:64]]
            encode_texts(model, texts, "", 32, bf16)
        time.sleep(args.pause)
        if args.interleave:
            binding = binding_of(model)
            if binding is not None:
                binding.cache.close()  # SQLite connections stay in their thread: the worker opens its own
            turns.append((setting, model, state, spec_recipe, warm))
            continue
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
    if turns:
        medians = take_turns([(setting, runner(model, state, spec, families, weights, recipe.seed, bf16,
                                               scratch / f"{setting}-turns".replace(":", "")))
                              for setting, model, state, spec, _ in turns])
        first = medians[turns[0][0]]
        print(f"\n{'setting':<10} {'first run s':>11} {'step s':>8} {'x ' + turns[0][0]:>8}  (interleaved, load "
              f"{os.getloadavg()[0]:.1f})")
        for setting, _, _, _, warm in turns:
            print(f"{setting:<10} {warm:11.3f} {medians[setting]:8.3f} {medians[setting] / first:8.2f}")


def runner(model, state, spec, families, weights, seed, bf16, out):
    from soupkit.train.finetune import finetune_on_mixture

    def run(on_step):
        model.load_state_dict(state)
        finetune_on_mixture(model, families, weights, spec.finetune, out, seed, bf16, on_step=on_step)
    return run


def take_turns(runs):
    """Median step seconds of each (label, run(on_step)), the runs taking turns one step at a time."""
    import threading

    lock = threading.Condition()
    turn = {"index": 0, "done": set()}
    times = {label: [] for label, _ in runs}

    def pass_turn(i):
        with lock:
            order = [j % len(runs) for j in range(i + 1, i + 1 + len(runs))]
            turn["index"] = next((j for j in order if j not in turn["done"]), i)
            lock.notify_all()

    def wait_turn(i):
        with lock:
            lock.wait_for(lambda: turn["index"] == i)
        return time.perf_counter()

    def worker(i, label, run):
        start = [wait_turn(i)]

        def on_step(step, value):
            times[label].append(time.perf_counter() - start[0])
            pass_turn(i)
            start[0] = wait_turn(i)

        try:
            run(on_step)
        finally:
            with lock:
                turn["done"].add(i)
            pass_turn(i)

    threads = [threading.Thread(target=worker, args=(i, label, run)) for i, (label, run) in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {label: statistics.median(values) for label, values in times.items()}


if __name__ == "__main__":
    main()
