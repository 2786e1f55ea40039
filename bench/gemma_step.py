"""A training step of the real EmbeddingGemma on this machine: today's loop against the new options.

    flock /tmp/soupkit-heavy.lock python bench/gemma_step.py [--steps 8] [--variants today,fused,freeze,freeze-ckpt,freeze-bf16]

Each variant runs in its own child process (so its peak RSS is its own), on the same data: the
medical recipe's seed mixture, batch 32, sequence 64, the recipe's settings for this base
(`finetune_by_base`: EmbeddingGemma's learning rate 1e-5) under each variant's own, soupkit's loop
(EmbeddingGemma loss, AdamW, bf16 autocast where the CPU has bf16 units), then a short probe pass
on five of the recipe's probes. Printed per variant: median s/step (steps 2..N), peak RSS, the
probe scores after the run, and the ratios against `today` (every parameter trained, AdamW's
per-tensor loop: soupkit's loop before these options). `fused` = AdamW's fused kernel (now the
default), `freeze` = fused + frozen token embeddings, `-ckpt` = with gradient checkpointing,
`-bf16`/`-fp32` = bf16 autocast forced on/off (the default is on only where the CPU has bf16 units).
Needs the fetched weights: soupkit fetch-model embeddinggemma-300m.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

VARIANTS = {  # today = the loop before these options: every parameter, AdamW's per-tensor implementation
    "today": {"fused_optimizer": False, "freeze_token_embeddings": False},
    "fused": {"freeze_token_embeddings": False},
    "freeze": {"freeze_token_embeddings": True},
    "freeze-ckpt": {"freeze_token_embeddings": True, "gradient_checkpointing": True},
    "ckpt": {"freeze_token_embeddings": False, "gradient_checkpointing": True},
    "freeze-bf16": {"freeze_token_embeddings": True, "bf16": True},  # autocast even without bf16 units
    "freeze-fp32": {"freeze_token_embeddings": True, "bf16": False},
    "freeze-lr2e-5": {"freeze_token_embeddings": True, "learning_rate": 2e-5},
    "freeze-lr1e-5": {"freeze_token_embeddings": True, "learning_rate": 1e-5},
    "freeze-lr5e-6": {"freeze_token_embeddings": True, "learning_rate": 5e-6},
    "lr5e-6": {"freeze_token_embeddings": False, "learning_rate": 5e-6},
}
PROBES = ["medical-icd10", "medical-abbreviations", "medical-wordnet", "general-retrieval", "code-search"]


def child(args) -> dict:
    """One variant: load, train `steps` steps timing each, probe; the result as a dict."""
    from soupkit.base_model import load_model, use_bf16
    from soupkit.config import load_recipe, seed_mixture_of
    from soupkit.data.load import load_recipe_families
    from soupkit.probes.score import ProbeSettings, score_probes
    from soupkit.models.fetch import same_model
    from soupkit.train.finetune import finetune_on_mixture

    # the recipe's `finetune_by_base` entry for this base applies first (as in a search), the variant on top
    recipe = load_recipe(args.recipe).model_copy(update={"base": args.base}).for_base(same_model)
    wanted = recipe.probe_names() if args.probes == "all" else args.probes.split(",")
    held_out = {f: {"probe_size": args.held_out_size, "probe_corpus": 2 * args.held_out_size}
                for f in recipe.probe_names_only() if args.held_out_size}
    finetune = recipe.finetune.model_dump()
    finetune.update(steps=args.steps, batch_size=32, max_seq_length=64, **VARIANTS[args.variant])
    for key, value in (item.split("=", 1) for item in args.set):
        *path, last = key.split(".")
        target = finetune
        for part in path:
            target = target[part]
        target[last] = yaml.safe_load(value)
    # only the families the seed mixture trains on or a wanted probe reads are built (data takes time)
    seed_weights = seed_mixture_of(recipe).weights
    keep = [f for f in recipe.model_dump()["families"]
            if (f if isinstance(f, str) else f["name"]) in seed_weights or f in wanted]
    recipe = recipe.model_validate({**recipe.model_dump(), "base": args.base, "families": keep,
                                    "probe_only": [f for f in recipe.probe_only if f in wanted],
                                    "probes": {**recipe.probes.model_dump(), "probe_size": args.probe_size,
                                               "probe_corpus": 2 * args.probe_size, "sizes": held_out},
                                    "finetune": finetune})
    families, probes = load_recipe_families(recipe)
    probes = {k: v for k, v in probes.items() if k in wanted}
    bf16 = use_bf16("cpu", recipe.finetune.bf16)
    model = load_model(recipe.base, "cpu")
    settings = ProbeSettings.from_recipe(recipe, bf16)
    result = {"variant": args.variant, "bf16": bf16}
    if args.base_scores:
        result["base_scores"] = score_probes(model, probes, settings)
    stamps = [time.perf_counter()]
    weights = seed_mixture_of(recipe).normalised()
    with tempfile.TemporaryDirectory(prefix="soupkit-gemma-step-") as tmp:
        run = finetune_on_mixture(model, families, weights, recipe.finetune, Path(tmp) / "model", recipe.seed, bf16,
                                  on_step=lambda step, loss: stamps.append(time.perf_counter()))
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    result.update(step_seconds=steps, losses=run.losses,
                  trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))
    start = time.perf_counter()
    result["scores"] = score_probes(model, probes, settings)
    result["probe_seconds"] = time.perf_counter() - start
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="embeddinggemma-300m")
    parser.add_argument("--recipe", default="medical")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--probe-size", type=int, default=100)
    parser.add_argument("--variants", default="today,fused,freeze,freeze-ckpt,freeze-bf16")
    parser.add_argument("--probes", default=",".join(PROBES), help="comma-separated probe names, or 'all'")
    parser.add_argument("--held-out-size", type=int, default=0, help="probe size of the probe-only families")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a finetune setting for every variant, e.g. learning_rate=1e-5 or loss.scale=20")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--base-scores", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return
    print(f"steps {args.steps}, batch 32, seq 64, settings {args.set or 'as in the recipe'}", flush=True)
    results = []
    for i, name in enumerate(args.variants.split(",")):
        command = [sys.executable, __file__, "--variant", name, "--base", args.base, "--recipe", args.recipe,
                   "--steps", str(args.steps), "--probe-size", str(args.probe_size), "--probes", args.probes,
                   "--held-out-size", str(args.held_out_size), *(f"--set={s}" for s in args.set)]
        command += ["--base-scores"] if i == 0 else []
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"variant {name} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(line.removeprefix("RESULT ")))
        report(results[-1], results[0])
    first = results[0]
    if "base_scores" in first:
        print("base    " + "  ".join(f"{k} {v:.4f}" for k, v in first["base_scores"].items()))
    for r in results:
        print(f"{r['variant']:12s}" + "  ".join(f"{k} {v:.4f}" for k, v in r["scores"].items())
              + f"  mean {statistics.mean(r['scores'].values()):.4f}")


def report(r: dict, today: dict) -> None:
    step = statistics.median(r["step_seconds"][1:] or r["step_seconds"])
    base = statistics.median(today["step_seconds"][1:] or today["step_seconds"])
    print(f"{r['variant']:12s} trainable {r['trainable'] / 1e6:6.1f}M  s/step {step:5.2f} "
          f"(steps {', '.join(f'{s:.1f}' for s in r['step_seconds'])})  ratio to today {step / base:.2f}x  "
          f"peak RSS {r['peak_rss_gb']:.2f} GB  probes {r['probe_seconds']:.0f}s  bf16 {r['bf16']}", flush=True)


if __name__ == "__main__":
    main()
