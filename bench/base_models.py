"""The base EmbeddingGemma-300m against all-MiniLM-L6-v2 on every built-in probe, and encode speed.

    flock /tmp/soupkit-heavy.lock python bench/base_models.py [--probe-size 100] [--dims 512,256,128]

Scores both models on the same probes (every built-in family whose source is installed) at full
width, at the Matryoshka dims asked for (MiniLM's 384 only where smaller) and on int8 / binary
codes; prints one markdown table, marks the probes where EmbeddingGemma scores >= 0.95 (saturated:
no room to show a gain), then times encoding of the same texts with each model. A retrieval probe
that takes harder distractors is scored with each: random, and as `<probe>+neighbours` and
`<probe>+lexical` (`probes.distractors`). Needs the fetched weights: soupkit fetch-model
embeddinggemma-300m.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

MODELS = {"MiniLM": "bundled:all-MiniLM-L6-v2", "EmbeddingGemma": "embeddinggemma-300m"}
SATURATED = 0.95
HARDER = ("neighbours", "lexical")  # the probes.distractors modes scored beside random ones


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe-size", type=int, default=100)
    parser.add_argument("--dims", default="512,256,128")
    parser.add_argument("--throughput-texts", type=int, default=256)
    args = parser.parse_args()

    from soupkit.base_model import load_model, use_bf16
    from soupkit.data.load import _registry
    from soupkit.data.registry import BuildOptions
    from soupkit.errors import MissingSourceError
    from soupkit.probes.encode import encode_texts
    from soupkit.probes.score import ProbeSettings, score_probes

    registry = _registry()
    options = BuildOptions(probe_size=args.probe_size, probe_corpus=2 * args.probe_size)
    families, t0 = {}, time.perf_counter()
    for name in registry:
        try:
            family = registry.get(name).build(options)
        except MissingSourceError as exc:
            print(f"skipped {name}: {exc}")
            continue
        if family.probe is not None:
            families[name] = family
            for mode in HARDER:
                hard = registry.get(name).build(replace(options, probe_distractors=mode))
                if hard.probe != family.probe:  # scores are keyed by family name: rename it
                    hard.name = f"{name}+{mode}"
                    families[hard.name] = hard
    print(f"{len(families)} probes built in {time.perf_counter() - t0:.0f}s (probe size {args.probe_size})", flush=True)
    texts = [t for f in families.values() for t in getattr(f.probe, "corpus", [])][: args.throughput_texts]
    bf16 = use_bf16("cpu", None)
    settings = ProbeSettings(bf16=bf16, dims=tuple(int(d) for d in args.dims.split(",")),
                             quantizations=("int8", "binary"))
    scores, speed = {}, {}
    for label, base in MODELS.items():
        model = load_model(base, "cpu")
        start = time.perf_counter()
        scores[label] = score_probes(model, families, settings)
        print(f"{label}: probes scored in {time.perf_counter() - start:.0f}s", flush=True)
        model.max_seq_length = settings.max_seq_length
        encode_texts(model, texts[:16], "", 32, bf16)  # warm-up
        start = time.perf_counter()
        encode_texts(model, texts, "", 32, bf16)
        speed[label] = len(texts) / (time.perf_counter() - start)
        del model

    names = list(scores["EmbeddingGemma"])
    print(f"\nbf16 autocast: {bf16}\n")
    print("| probe | " + " | ".join(MODELS) + " | EmbeddingGemma - MiniLM |")
    print("|---|---|---|---|")
    for name in names:
        gemma, mini = scores["EmbeddingGemma"][name], scores["MiniLM"].get(name)
        mark = " **(saturated)**" if gemma >= SATURATED and "@" not in name else ""
        mini_text = f"{mini:.3f}" if mini is not None else "-"
        diff = f"{gemma - mini:+.3f}" if mini is not None else "-"
        print(f"| {name}{mark} | {mini_text} | {gemma:.3f} | {diff} |")
    full = [n for n in names if "@" not in n]
    for label in MODELS:
        mean = sum(scores[label][n] for n in full) / len(full)
        print(f"\n{label}: mean over {len(full)} probes at full width {mean:.4f}; "
              f"encode {speed[label]:.1f} texts/s ({len(texts)} probe documents, max 128 tokens, batch 32)")
    print(f"EmbeddingGemma / MiniLM encode speed: {speed['EmbeddingGemma'] / speed['MiniLM']:.3f}x")
    saturated = [n for n in full if scores["EmbeddingGemma"][n] >= SATURATED]
    print(f"saturated on EmbeddingGemma (>= {SATURATED}): {', '.join(saturated) or 'none'}")


if __name__ == "__main__":
    main()
