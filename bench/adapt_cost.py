"""What one `soupkit adapt` proposal costs against one probe pass of the recipe, in this same process.

    python bench/adapt_cost.py [--model bundled] [--bank-size 8] [--recipe medical] [--repeats 3]
    python bench/adapt_cost.py --model DIR --bank-size 4 --probe-size 40 --repeats 2   # EmbeddingGemma size

A proposal is an in-memory merge of the bank (soupkit.merge.in_memory) followed by a probe pass;
the ratio printed is median(proposal) / median(probe pass), goal <= 1.2. The bank is the model's
folder `--bank-size` times: a merge does the same arithmetic whatever the weights hold.
`--probe-size` shrinks every probe (and drops the recipe's per-family sizes), which makes the
probe pass shorter and so the ratio larger: a conservative stand-in when a full pass is too slow.
Run it with nothing else busy on the machine (NOTES.md).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from soupkit.base_model import pick_device, resolve_base, use_bf16
from soupkit.config import load_recipe
from soupkit.data.load import load_recipe_families
from soupkit.merge.in_memory import InMemoryMerge
from soupkit.probes.score import ProbeSettings, score_probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled", help="model folder, or 'bundled' (all-MiniLM-L6-v2)")
    parser.add_argument("--recipe", default="medical")
    parser.add_argument("--bank-size", type=int, default=8)
    parser.add_argument("--probe-size", type=int, default=None, help="queries per probe (default: the recipe's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    if args.probe_size:
        probes_spec = recipe.probes.model_copy(update={"probe_size": args.probe_size,
                                                       "probe_corpus": 2 * args.probe_size, "sizes": {}})
        recipe = recipe.model_copy(update={"probes": probes_spec})
    device = pick_device()
    settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))
    _, probes = load_recipe_families(recipe)
    texts = sum(len(getattr(f.probe, a, [])) for f in probes.values()
                for a in ("queries", "corpus", "train_texts", "test_texts", "texts", "left", "right"))

    start = time.perf_counter()
    merger = InMemoryMerge([resolve_base(args.model)] * args.bank_size, device)
    load = time.perf_counter() - start
    print(f"bank of {args.bank_size} loaded in {load:.1f}s; {texts} texts per probe pass", flush=True)
    weights = [float(i + 1) for i in range(args.bank_size)]

    score_probes(merger.merge(weights), probes, settings)  # warm-up: first-call allocations, kernels
    probe, merge, proposal = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        score_probes(merger.model, probes, settings)
        probe.append(time.perf_counter() - start)
        start = time.perf_counter()
        model = merger.merge(weights[::-1])
        merged = time.perf_counter()
        score_probes(model, probes, settings)
        merge.append(merged - start)
        proposal.append(time.perf_counter() - start)
        print(f"probe pass {probe[-1]:.3f}s, proposal {proposal[-1]:.3f}s (merge {merge[-1]:.3f}s)", flush=True)
        weights = weights[::-1]

    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"model {args.model}: {merger.parameter_count / 1e6:.1f}M merged parameters; bank of {args.bank_size} "
          f"loaded in {load:.1f}s; peak RSS {rss_gb:.1f} GB; device {device}, bf16 {settings.bf16}")
    print(f"recipe {recipe.name}: {len(probes)} probes, {texts} texts per pass")
    print(f"probe pass  {statistics.median(probe):8.3f}s  (runs: {', '.join(f'{x:.3f}' for x in probe)})")
    print(f"merge       {statistics.median(merge):8.3f}s  (runs: {', '.join(f'{x:.3f}' for x in merge)})")
    print(f"proposal    {statistics.median(proposal):8.3f}s  (merge + probe pass)")
    print(f"ratio proposal / probe pass: {statistics.median(proposal) / statistics.median(probe):.3f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
