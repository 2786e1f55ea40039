"""In-memory merges: the same model the streaming merge writes to disk, without writing anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

from soupkit.errors import SoupkitError
from soupkit.merge import merge_models
from soupkit.model_folder import read_model_folder
from soupkit.merge.compat import largest_compatible_group
from soupkit.merge.in_memory import InMemoryMerge

TEXTS = ["cholera due to vibrio cholerae", "typhoid fever with heart involvement", "a debian package"]


@pytest.fixture(scope="session")
def bank(tiny_bert, tmp_path_factory) -> list[Path]:
    """Three tiny models of one architecture and tokenizer, different weights (Dense head included)."""
    root = tmp_path_factory.mktemp("bank")
    return [tiny_bert(root / f"model-{seed}", seed=seed) for seed in range(3)]


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_hot_weights_give_that_member_exactly(bank):
    merger = InMemoryMerge(bank)
    for index, path in enumerate(bank):
        weights = [0.0] * len(bank)
        weights[index] = 3.0  # shares: only the ratio counts
        merged = state(merger.merge(weights))
        expected = state(SentenceTransformer(str(path), device="cpu"))
        assert merged.keys() == expected.keys()
        for name in expected:
            assert torch.equal(merged[name], expected[name]), name
    assert merger.weights == [0.0, 0.0, 1.0]


def test_identical_inputs_give_the_input(bank):
    merged = state(InMemoryMerge([bank[1]] * 3).merge([0.2, 0.5, 0.3]))
    expected = state(SentenceTransformer(str(bank[1]), device="cpu"))
    for name in expected:
        torch.testing.assert_close(merged[name], expected[name], atol=1e-6, rtol=0, msg=name)


def test_equals_the_streaming_merge_written_to_disk(bank, tmp_path):
    weights = [0.5, 0.3, 0.2]
    merger = InMemoryMerge(bank)
    merger.merge([1.0, 1.0, 1.0])  # a merge before must leave no trace in the next
    in_memory = merger.merge(weights)
    on_disk = SentenceTransformer(str(merge_models(bank, tmp_path / "soup", "weighted", weights)), device="cpu")
    merged, written = state(in_memory), state(on_disk)
    assert merged.keys() == written.keys()
    assert any(name.startswith("2.") for name in merged)  # the Dense head is merged, not only the backbone
    for name in written:
        torch.testing.assert_close(merged[name], written[name], atol=1e-6, rtol=0, msg=name)
    # the weighted average of each input's file tensors, Dense head included
    heads = [load_file(path / "2_Dense" / "model.safetensors")["linear.weight"] for path in bank]
    expected = sum(w * h for w, h in zip(weights, heads))
    torch.testing.assert_close(merged["2.linear.weight"], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(in_memory.encode(TEXTS), on_disk.encode(TEXTS), atol=1e-5, rtol=0)


def test_tied_and_integer_tensors(bank):
    merger = InMemoryMerge(bank)
    model = merger.merge([1.0, 0.0, 1.0])
    names = [name for name, value in model.state_dict().items() if not value.is_floating_point()]
    first = SentenceTransformer(str(bank[0]), device="cpu").state_dict()
    for name in names:  # integer buffers (position ids) stay the first member's
        assert torch.equal(model.state_dict()[name], first[name])
    assert merger.parameter_count == sum(p.numel() for p in model.parameters())


def test_bad_weights_are_one_line(bank):
    merger = InMemoryMerge(bank[:2])
    for weights, expected in (([1.0], "1 values for 2 models"), ([1.0, -1.0], "finite, >= 0 and not all 0"),
                              ([0.0, 0.0], "not all 0"), ([float("nan"), 1.0], "finite")):
        with pytest.raises(SoupkitError, match=expected):
            merger.merge(weights)


def test_members_after_the_first_are_read_from_their_files(bank, monkeypatch):
    """Only the first member is built as a model; the others are read straight from their
    safetensors files, and give exactly the tensors loading them gives."""
    import soupkit.merge.in_memory as in_memory

    loads: list[str] = []
    real_load = in_memory._load
    monkeypatch.setattr(in_memory, "_load", lambda path, device: loads.append(Path(path).name) or real_load(path, device))
    merger = InMemoryMerge(bank)
    assert loads == ["model-0"]
    for index, path in enumerate(bank):
        expected = state(real_load(path, "cpu"))
        merged = state(merger.merge([1.0 if i == index else 0.0 for i in range(len(bank))]))
        for name in expected:
            assert torch.equal(merged[name], expected[name]), (path.name, name)


def test_a_first_member_whose_files_do_not_give_its_tensors_loads_every_member(bank, monkeypatch):
    import soupkit.merge.in_memory as in_memory

    loads: list[str] = []
    real_load = in_memory._load
    monkeypatch.setattr(in_memory, "_load", lambda path, device: loads.append(Path(path).name) or real_load(path, device))
    monkeypatch.setattr(in_memory, "_saved_keys", lambda folder: iter(()))  # no file key maps to a tensor
    InMemoryMerge(bank)
    assert loads == ["model-0", "model-1", "model-2"]


def _narrow_head(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    config_file = destination / "2_Dense" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "out_features": 8}))
    head = destination / "2_Dense" / "model.safetensors"
    save_file({k: v[:8].contiguous() for k, v in load_file(head).items()}, head)
    return destination


def test_incompatible_members_are_refused_and_named(bank, tmp_path):
    narrow = _narrow_head(bank[2], tmp_path / "narrow")
    with pytest.raises(SoupkitError) as caught:
        InMemoryMerge([bank[0], narrow])
    assert f"{narrow}/2_Dense/model.safetensors: tensor 'linear.weight' has shape [8, 32]" in str(caught.value)
    kept, left_out = largest_compatible_group([read_model_folder(p) for p in [narrow, bank[0], bank[1]]])
    assert kept == [1, 2]
    assert list(left_out) == [0] and "tensor 'linear.weight' has shape [8, 32]" in left_out[0]


def test_merge_package_imports_no_orchestration():
    """merge/ is a library: nothing from search/, probes/, data/, train/, soups/ or base_model."""
    import subprocess
    import sys

    code = ("import sys; import soupkit.merge, soupkit.merge.in_memory, soupkit.merge.compat; "
            "bad = [m for m in sys.modules if m.startswith(('soupkit.search', 'soupkit.probes', 'soupkit.data', "
            "'soupkit.train', 'soupkit.soups', 'soupkit.base_model'))]; print(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
