"""`finetune.train: top:<k>` and the trunk cache, on the tiny BERT and the tiny EmbeddingGemma.

Numbers with the cache equal those without it within float32 rounding: the bottom of a text is
computed in another batch than the uncached forward's (BLAS may sum in another order), so unit
embeddings, losses and gradients are compared at an absolute tolerance of 1e-5 (seen: <= 2e-7).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TOLERANCE = 1e-5
TEXTS = ["Cholera due to Vibrio cholerae", "x",
         "Typhoid fever with heart involvement, a text longer than the tiny sliding window of nine tokens",
         "Other salmonella infections"]


pytestmark = pytest.mark.usefixtures("trunk_home")  # a fresh $SOUPKIT_HOME: each test its own cache


def load(path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def encode(model, texts=TEXTS, **kw):
    return model.encode(texts, convert_to_tensor=True, show_progress_bar=False, **kw)


@pytest.mark.parametrize("k", [1, 2])
def test_embeddings_equal_with_and_without_the_cache(model_dir, k):
    from soupkit.models.trunk import attach_trunk, detach_trunk

    model = load(model_dir)
    plain = encode(model)
    binding = attach_trunk(model, k)
    cold = encode(model, batch_size=3)  # other batches than the plain pass: other padding
    warm = encode(model)
    assert (binding.misses, binding.hits) == (len(TEXTS), len(TEXTS))
    assert (cold - plain).abs().max() <= TOLERANCE and (warm - plain).abs().max() <= TOLERANCE
    detach_trunk(model)
    assert torch.equal(encode(model), plain)  # its own forward again


def _new_rows(model, seen: set, prompt: str | None = None) -> int:
    """How many texts of TEXTS (one batch) the cache has not seen: distinct new token ids."""
    features = model.preprocess(TEXTS, prompt=prompt)
    keys = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(features["input_ids"], features["attention_mask"])]
    new = len(set(keys) - seen)
    seen.update(keys)
    return new


def test_prompt_and_length_are_part_of_the_key(model_dir):
    from soupkit.models.trunk import attach_trunk

    model = load(model_dir)
    binding = attach_trunk(model, 1)
    seen: set = set()
    expected_misses = 0
    for prompt, length in ((None, None), (None, None), ("query: ", None), (None, 6), ("query: ", 6)):
        if length:
            model.max_seq_length = length  # only the texts it truncates are new
        expected_misses += _new_rows(model, seen, prompt)
        encode(model, prompt=prompt)
        assert binding.misses == expected_misses
    assert binding.hits == 5 * len(TEXTS) - expected_misses and expected_misses > len(TEXTS)


def test_training_step_loss_and_gradients_equal_with_and_without_the_cache(model_dir):
    from soupkit.config import FinetuneSpec
    from soupkit.models.trunk import binding_of, detach_trunk
    from soupkit.train.finetune import build_loss, prepare_training

    model = load(model_dir)
    spec = FinetuneSpec(train="top:1", bf16=False, loss={"hard_negatives": False})
    prepare_training(model, spec)
    model.eval()  # dropout off in the top too: the comparison is exact up to rounding
    loss_fn = build_loss(model, spec.loss)
    columns = [model.preprocess(TEXTS), model.preprocess(TEXTS[1:] + TEXTS[:1])]

    def step():
        model.zero_grad(set_to_none=True)
        loss = loss_fn([dict(c) for c in columns], None)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    binding = binding_of(model)
    cold, warm = step(), step()
    assert (binding.misses, binding.hits) == (len(TEXTS), 3 * len(TEXTS))  # the second column holds the same texts
    detach_trunk(model)
    plain = step()
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(plain[1]) == set(cold[1]) == trained  # gradients reach the top only
    assert not any(".layers.0." in n or ".layer.0." in n or "embed" in n for n in trained)
    for loss, grads in (cold, warm):
        assert abs(loss - plain[0]) <= TOLERANCE
        for name, grad in grads.items():
            assert (grad - plain[1][name]).abs().max() <= TOLERANCE * max(1.0, plain[1][name].abs().max()), name


def test_only_models_with_the_bases_bottom_join_its_cache(tiny_model_dir):
    from soupkit.models.trunk import attach_trunk, join_trunk_cache

    attach_trunk(load(tiny_model_dir), 1)
    same = load(tiny_model_dir)
    assert join_trunk_cache(same, "top:1") is not None
    assert join_trunk_cache(load(tiny_model_dir), "all") is None  # not trained top:k: its own forward
    assert join_trunk_cache(load(tiny_model_dir), "top:2") is None  # no finetune made that cache
    changed = load(tiny_model_dir)
    with torch.no_grad():
        changed[0].auto_model.embeddings.word_embeddings.weight[1] += 1e-3
    assert join_trunk_cache(changed, "top:1") is None
    top_changed = load(tiny_model_dir)
    with torch.no_grad():
        top_changed[0].auto_model.encoder.layer[1].output.dense.weight += 1e-3
    assert join_trunk_cache(top_changed, "top:1") is not None  # the top may differ: it is not cached


def test_top_k_freezes_the_bottom_and_base_weights_share_it(model_dir):
    from soupkit.config import FinetuneSpec
    from soupkit.models.layers import backbone_of
    from soupkit.train.finetune import base_weights, prepare_training

    model = load(model_dir)
    spec = FinetuneSpec(train="top:1")
    state = base_weights(model, spec)
    prepare_training(model, spec)
    backbone = backbone_of(model)
    frozen = set(backbone.frozen_names(model, 1))
    live = model.state_dict()
    for name, value in state.items():
        assert (value.data_ptr() == live[name].data_ptr()) == (name in frozen), name
    params = dict(model.named_parameters())
    assert {n for n, p in params.items() if not p.requires_grad} == frozen & set(params)
    assert all(n.startswith(backbone.prefix) for n in frozen)
    assert any(n.startswith(backbone.prefix) and params[n].requires_grad for n in params)  # the top layer
    assert all(p.requires_grad for n, p in params.items() if not n.startswith(backbone.prefix))  # heads


def test_k_beyond_the_models_layers_is_one_line(tiny_model, tiny_recipe_file, search_command, one_line_error, tmp_path,
                                                 monkeypatch):
    recipe = tiny_recipe_file(tiny_model, tmp_path / "r.yaml")
    args = search_command(recipe, tmp_path / "run")
    one_line_error([*args, "--train", "top:3"], "top:3", "2 transformer layers", "top:1 to top:2",
                   workdir=tmp_path)
    one_line_error([*args, "--train", "top"], "--train", "'top' is not 'all' or 'top:<k>'", workdir=tmp_path)
    monkeypatch.setenv("SOUPKIT_TRUNK_CACHE_GB", "lots")
    one_line_error([*args, "--train", "top:1"], "SOUPKIT_TRUNK_CACHE_GB=lots", workdir=tmp_path)


def test_cache_command_shows_and_clears(tiny_model_dir, trunk_home):
    from click.testing import CliRunner

    from soupkit.cli import main
    from soupkit.models.trunk import attach_trunk

    model = load(tiny_model_dir)
    attach_trunk(model, 1, "tiny")
    encode(model)
    shown = CliRunner().invoke(main, ["cache"])
    assert shown.exit_code == 0 and "tiny (BertModel, layers 1+ of 2 trained) 4 texts" in shown.output
    cleared = CliRunner().invoke(main, ["cache", "--clear"])
    assert cleared.exit_code == 0 and "removed 1 trunk cache file" in cleared.output
    assert not list((trunk_home / "trunk-cache").glob("*"))
    bad = CliRunner(env={"SOUPKIT_TRUNK_CACHE_GB": "lots"}).invoke(main, ["cache"])
    assert bad.exit_code == 2 and "SOUPKIT_TRUNK_CACHE_GB=lots" in bad.output


# --- the store: concurrency, a killed writer, eviction ---

WRITER = """
import sys, hashlib
from soupkit.models.trunk_cache import TrunkCache
path, who, batches, rows, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def value(key):
    return (hashlib.sha256(key).digest() * (size // 32 + 1))[:size]
cache = TrunkCache(path, limit=1 << 40)
for b in range(batches if batches > 0 else 10**9):
    # half the keys are shared by every writer, half are this writer's own
    keys = [f"shared-{b}-{r}".encode() if r % 2 else f"{who}-{b}-{r}".encode() for r in range(rows)]
    cache.put_many({k: value(k) for k in keys})
    found = cache.get_many(keys)
    assert all(found[k] == value(k) for k in keys), "read back wrong"
    print(b, flush=True)
"""


def _value(key: bytes, size: int) -> bytes:
    import hashlib

    return (hashlib.sha256(key).digest() * (size // 32 + 1))[:size]


def _writer(path: Path, who: str, batches: int, rows: int, size: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(batches), str(rows), str(size)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_rows(path: Path, size: int) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT key, value, nbytes FROM entries").fetchall()
        (total,) = db.execute("SELECT bytes FROM total").fetchone()
    assert all(value == _value(key, size) and nbytes == size for key, value, nbytes in rows)
    assert total == size * len(rows)
    return len(rows)


def test_two_processes_fill_one_cache(tmp_path):
    path = tmp_path / "cache.sqlite"
    writers = [_writer(path, who, 40, 6, 4096) for who in ("a", "b")]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    assert _check_rows(path, 4096) == 40 * 6 // 2 * 3  # each writer's own halves and one shared half


def test_a_killed_writer_leaves_a_cache_that_opens_and_reads_right(tmp_path):
    from soupkit.models.trunk_cache import TrunkCache

    path = tmp_path / "cache.sqlite"
    writer = _writer(path, "a", 0, 20, 200_000)  # writes until killed, 4 MB a transaction
    for _ in range(3):  # a few batches committed, the next one mid-write
        assert writer.stdout.readline(), writer.stderr.read()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    count = _check_rows(path, 200_000)
    assert count >= 3 * 20 and count % 20 == 0  # whole transactions only
    cache = TrunkCache(path)
    cache.put_many({b"after": _value(b"after", 200_000)})
    assert cache.get_many([b"after"]) == {b"after": _value(b"after", 200_000)}
    assert cache.stats().entries == count + 1


def test_the_least_recently_used_rows_go_past_the_limit(tmp_path, monkeypatch):
    from soupkit.models import trunk_cache

    clock = iter(range(1000, 2000, 100))
    monkeypatch.setattr(trunk_cache.time, "time", lambda: float(next(clock)))
    monkeypatch.setattr(trunk_cache, "TOUCH_SECONDS", 0.0)
    cache = trunk_cache.TrunkCache(tmp_path / "cache.sqlite", limit=3000)
    for key in (b"a", b"b", b"c"):
        cache.put_many({key: b"x" * 1000})
    assert set(cache.get_many([b"a"])) == {b"a"}  # a is used again: b is now the oldest
    cache.put_many({b"d": b"x" * 1000})
    assert set(cache.get_many([b"a", b"b", b"c", b"d"])) == {b"a", b"c", b"d"}
    assert cache.stats().stored_bytes == 3000
    cache.put_many({b"e": b"x" * 2500})  # one row larger than the rest: as many go as it takes
    assert set(cache.get_many([b"a", b"c", b"d", b"e"])) == {b"e"}


def test_a_read_refreshes_a_rows_last_use_without_rewriting_its_hidden_states(tmp_path, monkeypatch):
    """A warm step or probe pass reads every row it uses; refreshing their last-used times must not
    write the rows' megabytes again (SQLite overwrites only the changed pages of a same-size row)."""
    from soupkit.models import trunk_cache

    monkeypatch.setattr(trunk_cache, "TOUCH_SECONDS", 0.0)
    path = tmp_path / "cache.sqlite"
    cache = trunk_cache.TrunkCache(path, limit=2**30)
    rows = {bytes([i]): bytes([i]) * 2**20 for i in range(4)}
    cache.put_many(rows)
    cache.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert Path(f"{path}-wal").stat().st_size == 0
    time.sleep(0.01)
    assert cache.get_many(list(rows)) == rows
    assert 0 < Path(f"{path}-wal").stat().st_size < 2**18  # the touch was written, the rows were not


def test_a_malformed_size_limit_is_one_line(monkeypatch):
    from soupkit.errors import SoupkitError
    from soupkit.models.trunk_cache import size_limit

    monkeypatch.setenv("SOUPKIT_TRUNK_CACHE_GB", "0.5")
    assert size_limit() == 2**29
    monkeypatch.setenv("SOUPKIT_TRUNK_CACHE_GB", "-1")
    with pytest.raises(SoupkitError, match="SOUPKIT_TRUNK_CACHE_GB=-1"):
        size_limit()


# --- merges of top:k checkpoints ---


def _top_checkpoint(base: Path, out: Path, seed: int) -> Path:
    """What a top:1 finetune changes: the top layer and the heads (never the frozen bottom)."""
    from soupkit.models.layers import backbone_of

    model = load(base)
    backbone = backbone_of(model)
    frozen = set(backbone.frozen_names(model, 1))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name not in frozen:
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save(str(out))
    return out


def test_a_merge_of_top_k_checkpoints_equals_a_full_merge_and_keeps_the_bottom(model_dir, tmp_path, trunk_home):
    from soupkit.merge import merge_models
    from soupkit.merge.in_memory import InMemoryMerge
    from soupkit.models.layers import backbone_of
    from soupkit.models.trunk import attach_trunk, join_trunk_cache

    members = [_top_checkpoint(model_dir, tmp_path / f"ckpt{i}", seed=i) for i in range(2)]
    out = merge_models(members, tmp_path / "soup", method="weighted", weights=[0.3, 0.7])
    soup, base = load(out), load(model_dir)
    inputs = [load(m).state_dict() for m in members]
    frozen = set(backbone_of(soup).frozen_names(soup, 1))
    for name, value in soup.state_dict().items():
        if name in frozen:
            assert torch.equal(value, base.state_dict()[name]), name  # copied, bit for bit
        elif value.is_floating_point():
            full = 0.3 * inputs[0][name].float() + 0.7 * inputs[1][name].float()
            assert torch.allclose(value.float(), full, atol=1e-6), name
    merger = InMemoryMerge(members)
    in_memory = merger.merge([0.3, 0.7])
    assert merger.varying_names.isdisjoint(frozen)
    for name, value in in_memory.state_dict().items():
        assert torch.allclose(value.float(), soup.state_dict()[name].float(), atol=1e-6), name
    # the soup loads and encodes on a machine that never saw the cache ...
    assert not trunk_home.exists()
    plain = encode(soup)
    # ... and, where the base's cache exists, joins it with the same numbers
    attach_trunk(base, 1)
    encode(base)
    joined = load(out)
    binding = join_trunk_cache(joined, "top:1")
    assert (encode(joined) - plain).abs().max() <= TOLERANCE and binding.hits == len(TEXTS)


@pytest.mark.slow
def test_a_top_k_search_keeps_the_bottom_and_fills_the_cache(tiny_model, tiny_recipe, search, load_study, tmp_path, trunk_home):
    from soupkit.merge import merge_models
    from soupkit.models.layers import backbone_of
    from soupkit.models.trunk import join_trunk_cache
    from soupkit.models.trunk_cache import TrunkCache, cache_files
    from soupkit.study_record import TrialRecord

    search(tiny_recipe(tiny_model, train="top:1"), tmp_path / "run", budget=2)
    base = load(tiny_model)
    frozen = set(backbone_of(base).frozen_names(base, 1))
    trials = [t for t in load_study(tmp_path / "run").get_trials() if t.state.name == "COMPLETE"]
    checkpoints = [TrialRecord.of(t).checkpoint for t in trials]
    assert len(checkpoints) == 2
    for path in checkpoints:
        state = load(path).state_dict()
        changed = {n for n, v in base.state_dict().items() if not torch.equal(v, state[n])}
        assert changed and changed.isdisjoint(frozen)  # the top trained, the bottom did not move
    (cache,) = cache_files()
    assert TrunkCache(cache).stats().entries > 0
    soup = load(merge_models(checkpoints, tmp_path / "soup"))
    assert join_trunk_cache(soup, "top:1") is not None  # a soup of the trials reads the same cache


def test_train_setting_per_base_and_for_ingredients():
    from pydantic import ValidationError

    from soupkit.config import FinetuneSpec, IngredientSpec, Recipe

    recipe = Recipe.model_validate({"name": "r", "base": "google/embeddinggemma-300m", "families": ["a"],
                                    "finetune_by_base": {"google/embeddinggemma-300m": {"train": "top:4"}}})
    assert recipe.finetune.top_layers is None and recipe.for_base().finetune.top_layers == 4
    assert IngredientSpec(train="top:2").finetune_spec(FinetuneSpec(train="top:4")).train == "top:2"
    assert IngredientSpec().finetune_spec(FinetuneSpec(train="top:4")).train == "top:4"
    for bad in ("top:0", "top:-1", "top", "bottom:2", "top:2.5"):
        with pytest.raises(ValidationError, match="is not 'all' or 'top:<k>'"):
            FinetuneSpec(train=bad)


def test_a_text_repeated_in_a_batch_is_computed_once(gemma_dir):
    from soupkit.models.trunk import attach_trunk

    model = load(gemma_dir)
    plain = encode(model, TEXTS + TEXTS[:2])
    binding = attach_trunk(model, 1)
    cached = encode(model, TEXTS + TEXTS[:2])
    assert (binding.misses, binding.hits) == (len(TEXTS), 2)
    assert (cached - plain).abs().max() <= TOLERANCE


def test_bf16_autocast_is_part_of_the_key(tiny_model_dir):
    from soupkit.models.trunk import attach_trunk
    from soupkit.probes.encode import encode_texts

    model = load(tiny_model_dir)
    plain = {bf16: encode_texts(model, TEXTS, "", 8, bf16) for bf16 in (False, True)}
    binding = attach_trunk(model, 1)
    for bf16 in (False, True, False, True):
        cached = encode_texts(model, TEXTS, "", 8, bf16)
        assert abs(cached - plain[bf16]).max() <= (1e-2 if bf16 else TOLERANCE)  # bf16: its own rounding
    assert (binding.misses, binding.hits) == (2 * len(TEXTS), 2 * len(TEXTS))
