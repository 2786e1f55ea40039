"""A 2-trial search and a soup on the full 308M EmbeddingGemma shape (random init) on a GPU.

    bash bench/gpu_check.sh            (installs, then runs this; a few minutes on one H100)
    bash bench/gpu_check_offline.sh    (no network: carried wheels in .whl/, PYTHONPATH instead of an install)

Prints steps/second of the finetunes, probe seconds, and peak GPU memory. The families are ones
whose data is small (two PyPI wheels and the interpreter's own stdlib source), so the check also
runs on an offline machine that the data can be carried to.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from soupkit.config import Recipe
from soupkit.soups.study_soup import build_soup
from soupkit.study_record import TrialRecord
from soupkit.models import build_embeddinggemma
from soupkit.search.run import run_search
from soupkit.search.study import default_storage, open_study


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device: this check is for a GPU machine"
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    work = Path(tempfile.mkdtemp(prefix="soupkit-gpu-"))
    start = time.perf_counter()
    base = build_embeddinggemma(work / "embeddinggemma-full", size="full", seed=0)
    print(f"built full EmbeddingGemma shape in {time.perf_counter() - start:.0f}s")
    recipe = Recipe.model_validate({
        "name": "gpu-check",
        "base": str(base),
        "families": ["medical-icd10", "medical-abbreviations", "code-search"],
        "finetune": {"steps": 20, "batch_size": 32, "max_seq_length": 128,
                     "loss": {"matryoshka_dims": [768, 512, 256, 128], "spread_out_weight": 1.0}},
        "probes": {"probe_size": 200, "probe_corpus": 400, "dims": [256], "quantizations": ["int8"]},
        "search": {"budget": 2, "n_startup_trials": 1},
    })
    torch.cuda.reset_peak_memory_stats()
    out = work / "run"
    run_search(recipe, out, log=print, show_progress=False)
    study = open_study(default_storage(out), "gpu-check", None, ["maximize"])
    for t in study.trials:
        secs = TrialRecord.of(t).seconds
        print(f"trial {t.number}: {t.state.name} finetune {secs.get('finetune')}s "
              f"({recipe.finetune.steps / secs['finetune']:.2f} steps/s) probe {secs.get('probe')}s "
              f"objective {t.values[0] if t.values else None}")
    soup = build_soup(study, out, method="uniform", top_k=2)
    print(f"soup objective {soup.objective:.4f}, modules: {sorted(p.name for p in soup.path.iterdir())}")
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB on {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
