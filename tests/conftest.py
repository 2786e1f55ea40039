"""Shared fixtures: a tiny real BERT sentence-transformers model built once per session.

The vocabulary is the bundled MiniLM's real WordPiece vocabulary; the weights are random and tiny
(hidden 32, 2 layers), so finetunes and probes run in a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_tiny_bert(out: Path, seed: int = 0, prompts: dict[str, str] | None = None) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from soupkit.base_model import bundled_model_path

    torch.manual_seed(seed)
    vocab = bundled_model_path() / "vocab.txt"
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )
    backbone_dir = out.parent / f".{out.name}-backbone"
    BertModel(config).save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    transformer = Transformer(str(backbone_dir), max_seq_length=64)
    pooling = Pooling(32, pooling_mode="mean")
    dense = Dense(32, 16, bias=False, activation_function=torch.nn.Identity())
    model = SentenceTransformer(modules=[transformer, pooling, dense, Normalize()], device="cpu",
                                prompts=prompts or {})
    model.save(str(out))
    shutil.rmtree(backbone_dir)
    return out


@pytest.fixture(scope="session")
def tiny_bert():
    """`tiny_bert(out, seed=0, prompts=None)`: build another tiny model (a bank of different ones)."""
    return build_tiny_bert


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny sentence-transformers model folder; copy it (`tiny_model`) before changing it."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory) -> Path:
    """A tiny EmbeddingGemma-shaped model (Gemma3 backbone, Dense heads), built once per session."""
    from soupkit.models import build_embeddinggemma

    return build_embeddinggemma(tmp_path_factory.mktemp("tiny-gemma") / "gemma", size="tiny", seed=0)


@pytest.fixture(params=["bert", "gemma"])
def model_dir(request, tiny_model_dir, gemma_dir) -> Path:
    """Each tiny architecture soupkit supports in turn: BERT (MiniLM's) and Gemma3 (EmbeddingGemma's)."""
    return tiny_model_dir if request.param == "bert" else gemma_dir


@pytest.fixture
def trunk_home(tmp_path, monkeypatch) -> Path:
    """A fresh $SOUPKIT_HOME (so a fresh trunk cache) with the default size limit."""
    monkeypatch.setenv("SOUPKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOUPKIT_TRUNK_CACHE_GB", raising=False)
    return tmp_path / "home"


@pytest.fixture
def tiny_model(tiny_model_dir, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst


# --- a tiny search on real ICD-10 slices, shared by the search, soup, report and crash tests ---

TINY_FAMILIES = ("medical-icd10", "medical-icd10-chapters")


def _tiny_recipe(model: Path, **finetune):
    from soupkit.config import Recipe

    return Recipe.model_validate(
        {
            "name": "tiny",
            "base": str(model),
            "families": list(TINY_FAMILIES),
            "seed_mixture": {"medical-icd10": 3, "medical-icd10-chapters": 1},
            "finetune": {"steps": 3, "batch_size": 4, "max_seq_length": 32, "bf16": False, **finetune},
            "probes": {"probe_size": 20, "probe_corpus": 40, "max_seq_length": 32, "max_train": 200},
            "search": {"budget": 2, "sampler": "tpe", "n_startup_trials": 1},
        }
    )


def _search(recipe, out: Path, budget: int | None = None, **kw):
    from soupkit.search.run import run_search

    if budget is not None:
        recipe = recipe.model_copy(update={"search": recipe.search.model_copy(update={"budget": budget})})
    return run_search(recipe, out, log=lambda s: None, show_progress=False, **kw)


def _load_study(out: Path, directions=("maximize",)):
    from soupkit.search.study import default_storage, open_study

    return open_study(default_storage(out), "tiny", None, list(directions))


@pytest.fixture(scope="session")
def tiny_recipe():
    """`tiny_recipe(model, **finetune)`: a two-family recipe on the tiny model, 3 steps a trial."""
    return _tiny_recipe


@pytest.fixture(scope="session")
def search():
    """`search(recipe, out, budget=None, **run_search options)`: a quiet search, to the budget."""
    return _search


@pytest.fixture(scope="session")
def load_study():
    """`load_study(out, directions=("maximize",))`: the study of a tiny search's run folder."""
    return _load_study


@pytest.fixture(scope="session")
def tiny_recipe_file():
    """`tiny_recipe_file(model, path, **changes)`: the tiny recipe written as YAML."""

    def write(model: Path, path: Path, **changes) -> Path:
        import yaml

        data = _tiny_recipe(model).model_dump(mode="json")
        path.write_text(yaml.safe_dump({**data, **changes}, sort_keys=False))
        return path

    return write


def _folder_hash(root: Path) -> str:
    """Names, kinds, contents and link targets of everything under `root`."""
    import hashlib

    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.readlink(path).encode())
            elif path.is_file():
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            else:
                digest.update(b"dir")
    return digest.hexdigest()


@pytest.fixture(scope="session")
def folder_hash():
    """`folder_hash(root)`: one hash of every name, file content and link under `root`, to show
    that a command wrote, changed or deleted nothing."""
    return _folder_hash


@pytest.fixture(scope="session")
def one_line_error():
    """`one_line_error(args, *needles, workdir=...)`: `soupkit ARGS` must fail with exit 2 and one
    stderr line holding every needle (no traceback), and write, change or delete nothing under
    `workdir`."""
    from click.testing import CliRunner

    from soupkit.cli import main

    def check(args: list[str], *needles: str, workdir: Path) -> str:
        before = _folder_hash(workdir)
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (result.output, result.exception)
        assert "Traceback" not in result.output, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        for needle in needles:
            assert needle in lines[0], lines[0]
        assert _folder_hash(workdir) == before, "the command wrote, changed or deleted files"
        return lines[0]

    return check


@pytest.fixture(scope="session")
def search_command():
    """`search_command(recipe_path, out, *extra)`: the arguments of a quiet `soupkit search`."""

    def args(recipe: Path, out: Path, *extra: str) -> list[str]:
        return ["search", "--recipe", str(recipe), "--out", str(out), "--quiet", *extra]

    return args


def _run_until_paused(args: list[str], phase: str, tmp_path: Path, timeout: float = 180):
    """Start `soupkit ARGS`, wait until it pauses at `phase` (soupkit.pause), and return it, still running."""
    import subprocess
    import sys
    import time

    marker = tmp_path / f"paused-{phase.replace(':', '-')}"
    env = {**os.environ, "SOUPKIT_TEST_PAUSE_AT": phase, "SOUPKIT_TEST_PAUSE_FILE": str(marker),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "soupkit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never reached {phase}: {proc.communicate()[0][-3000:]}")
        time.sleep(0.1)
    return proc


@pytest.fixture(scope="session")
def run_until_paused():
    """`run_until_paused(args, phase, tmp_path[, timeout])`: `soupkit ARGS` stopped at `phase`, still running."""
    return _run_until_paused
