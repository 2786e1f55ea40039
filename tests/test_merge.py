"""Merging: one suite every registered method passes, streaming-vs-mergekit parity, the checks.

A tiny BERT sentence-transformers model (Transformer -> mean Pooling -> Dense 32->16 -> Normalize,
with prompts) is built once per session; seeded noisy copies of it play the finetunes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from soupkit.errors import SoupkitError
from soupkit.merge import METHODS, MERGE_RECORD, merge_models, parse_parameters, parse_weights, read_model_folder
from soupkit.merge import streaming

PROMPTS = {"query": "query: ", "document": "doc: "}
EXPECTED_METHODS = {"uniform", "weighted", "linear", "task_arithmetic", "ties", "dare_ties", "dare_linear",
                    "slerp", "model_stock"}


# ---------------------------------------------------------------- fixtures


def _icd_words(count: int) -> list[str]:
    """The first `count` distinct words of the ICD-10-CM titles (cholera, typhoid, ...)."""
    with warnings.catch_warnings():  # the package reads its data with deprecated importlib calls
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm as icd

        codes = icd.get_all_codes()
    words: dict[str, None] = {}
    for code in codes:
        words.update(dict.fromkeys(re.findall(r"[a-z]+", icd.get_description(code).lower())))
        if len(words) >= count:
            break
    return list(words)[:count]


def _build_tiny_model(folder: Path, work: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab_file = work / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_icd_words(300)]) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab_file))
    assert tokenizer.tokenize("cholera due to vibrio") == ["cholera", "due", "to", "vibrio"]
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(work / "bert")
    tokenizer.save_pretrained(work / "bert")
    modules = [
        Transformer(str(work / "bert"), max_seq_length=32),
        Pooling(32, pooling_mode="mean"),
        Dense(32, 16, bias=False, activation_function=None),
        Normalize(),
    ]
    model = SentenceTransformer(modules=modules, prompts=PROMPTS, default_prompt_name="query")
    model.save_pretrained(str(folder))


def _rewrite_tensors(folder: Path, change) -> None:
    """Apply change(name, tensor) -> tensor | None to every tensor of every safetensors file."""
    for file in sorted(folder.rglob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            metadata = handle.metadata()
        tensors = {}
        for name, tensor in load_file(file).items():
            new = change(name, tensor)
            if new is not None:
                tensors[name] = new.contiguous()
        save_file(tensors, file, metadata=metadata)


def _noisy_copy(source: Path, destination: Path, seed: int) -> Path:
    shutil.copytree(source, destination)
    generator = torch.Generator().manual_seed(seed)

    def add_noise(name, tensor):
        if not tensor.is_floating_point():
            return tensor
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32) * 0.02
        return (tensor.float() + noise).to(tensor.dtype)

    _rewrite_tensors(destination, add_noise)
    return destination


def _bf16_copy(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    _rewrite_tensors(destination, lambda n, t: t.to(torch.bfloat16) if t.is_floating_point() else t)
    return destination


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """base, three finetune-like copies a, b, c, and bf16 versions of base, a and b. Read-only."""
    root = tmp_path_factory.mktemp("models")
    _build_tiny_model(root / "base", tmp_path_factory.mktemp("build"))
    found = {"base": root / "base"}
    for seed, name in enumerate("abc", start=1):
        found[name] = _noisy_copy(root / "base", root / name, seed)
    for name in ("base", "a", "b"):
        found[f"{name}_bf16"] = _bf16_copy(found[name], root / f"{name}_bf16")
    return found


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder, keyed 'relative/file.safetensors::name'."""
    found = {}
    for file in sorted(folder.rglob("*.safetensors")):
        for name, tensor in load_file(file).items():
            found[f"{file.relative_to(folder)}::{name}"] = tensor
    return found


def assert_same_tensors(left: Path, right: Path, atol: float = 1e-6) -> None:
    a, b = tensors(left), tensors(right)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), atol=atol, rtol=0, msg=key)


def assert_nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def run_method(name: str, models: dict[str, Path], out: Path, suffix: str = "", **kwargs) -> Path:
    """Merge a and b (and c for methods that need 3 models) with the method's base needs met."""
    spec = METHODS.get(name)
    inputs = [models["a" + suffix], models["b" + suffix]]
    if spec.base == "required":
        kwargs.setdefault("base", models["base" + suffix])
    if spec.needs_weights:
        kwargs.setdefault("weights", [1.0] * len(inputs))
    return merge_models(inputs, out, method=name, **kwargs)


# ---------------------------------------------------------------- the shared suite

ALL_METHODS = METHODS.names()


def test_every_expected_method_is_registered():
    assert EXPECTED_METHODS <= set(ALL_METHODS)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_identical_inputs_give_the_input(method, models, tmp_path):
    spec = METHODS.get(method)
    same = models["a"]
    kwargs = {"base": same} if spec.base != "ignored" else {}
    if spec.needs_weights:
        kwargs["weights"] = [0.3] * spec.min_models
    # identical inputs, each its own folder: one folder given twice is refused (issue 31 #11)
    copies = [shutil.copytree(same, tmp_path / f"copy-{i}") for i in range(1, spec.min_models)]
    out = merge_models([same, *copies], tmp_path / "out", method=method, **kwargs)
    assert_same_tensors(out, same)


@pytest.mark.parametrize("suffix", ["", "_bf16"], ids=["fp32", "bf16"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_shapes_and_dtypes_are_kept(method, suffix, models, tmp_path):
    out = run_method(method, models, tmp_path / "out", suffix)
    merged, original = tensors(out), tensors(models["a" + suffix])
    assert merged.keys() == original.keys()
    for key, tensor in original.items():
        assert (merged[key].shape, merged[key].dtype) == (tensor.shape, tensor.dtype), key
    assert not torch.equal(merged["model.safetensors::encoder.layer.0.attention.self.query.weight"],
                           original["model.safetensors::encoder.layer.0.attention.self.query.weight"])


@pytest.mark.parametrize("method", ALL_METHODS)
def test_weights_follow_the_declared_policy(method, models, tmp_path):
    spec = METHODS.get(method)
    if spec.weights == "none":
        with pytest.raises(SoupkitError, match="takes no --weights"):
            run_method(method, models, tmp_path / "out", weights=[1.0, 1.0])
        assert_nothing_written(tmp_path, tmp_path / "out")
    elif spec.weights == "normalised":
        doubled = run_method(method, models, tmp_path / "doubled", weights=[2.0, 2.0])
        ones = run_method(method, models, tmp_path / "ones", weights=[1.0, 1.0])
        skewed = run_method(method, models, tmp_path / "skewed", weights=[3.0, 1.0])
        assert_same_tensors(doubled, ones)
        with pytest.raises(AssertionError):
            assert_same_tensors(skewed, ones)
    else:  # scaled: a weight multiplies that input's task vector, so zero weights give the base
        zero = run_method(method, models, tmp_path / "zero", weights=[0.0, 0.0])
        assert_same_tensors(zero, models["base"])


@pytest.mark.parametrize("method", ALL_METHODS)
def test_base_follows_the_declared_policy(method, models, tmp_path):
    spec = METHODS.get(method)
    inputs = [models["a"], models["b"]]
    weights = [1.0, 1.0] if spec.needs_weights else None
    if spec.base == "required":
        with pytest.raises(SoupkitError, match=r"needs a base model \(--base\)"):
            merge_models(inputs, tmp_path / "out", method=method, weights=weights)
        assert_nothing_written(tmp_path, tmp_path / "out")
    elif spec.base == "ignored":
        with pytest.raises(SoupkitError, match="does not use a base model"):
            merge_models(inputs, tmp_path / "out", method=method, weights=weights, base=models["base"])
        assert_nothing_written(tmp_path, tmp_path / "out")
    else:  # optional: the first input is the default base
        implicit = merge_models(inputs, tmp_path / "implicit", method=method)
        explicit = merge_models(inputs, tmp_path / "explicit", method=method, base=models["a"])
        assert_same_tensors(implicit, explicit)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_output_loads_with_every_module_and_prompt(method, models, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = run_method(method, models, tmp_path / "out")
    model = SentenceTransformer(str(out), local_files_only=True)
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert model.prompts == PROMPTS and model.default_prompt_name == "query"
    assert model.encode(["cholera due to vibrio"]).shape == (1, 16)
    record = yaml.safe_load((out / MERGE_RECORD).read_text())
    assert record["method"] == method
    assert record["inputs"] == [str(models["a"].resolve()), str(models["b"].resolve())]
    assert f"--method {method}" in record["command"]
    assert method in (out / "README.md").read_text()


# ---------------------------------------------------------------- streaming soups


def test_streaming_matches_sentence_transformers_linear(models, tmp_path):
    from sentence_transformers import SentenceTransformer

    inputs = [models["a"], models["b"], models["c"]]
    for weights in ([0.2, 0.5, 0.3], None):
        method = "uniform" if weights is None else "weighted"
        out = merge_models(inputs, tmp_path / method, method=method, weights=weights)
        parameters = {"weight": weights} if weights else None
        reference = SentenceTransformer.merge([str(p) for p in inputs], "linear", parameters=parameters)
        ours = SentenceTransformer(str(out), local_files_only=True).state_dict()
        theirs = reference.state_dict()
        assert ours.keys() == theirs.keys()
        for key in ours:
            torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=0, msg=key)


def test_weighted_with_equal_weights_is_uniform(models, tmp_path):
    inputs = [models["a"], models["b"], models["c"]]
    weighted = merge_models(inputs, tmp_path / "weighted", method="weighted", weights=[2, 2, 2])
    uniform = merge_models(inputs, tmp_path / "uniform")
    assert_same_tensors(weighted, uniform, atol=0)


def test_bf16_soup_is_the_rounded_float32_average(models, tmp_path):
    out = merge_models([models["a_bf16"], models["b_bf16"]], tmp_path / "out")
    a, b, merged = tensors(models["a_bf16"]), tensors(models["b_bf16"]), tensors(out)
    for key, tensor in merged.items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, ((a[key].float() * 0.5) + b[key].float() * 0.5).to(torch.bfloat16)), key


def _synthetic_folder(folder: Path, seed: int) -> Path:
    """One module holding float, integer and bool tensors, beside an ONNX export and a checkpoint."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir()
    (folder / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x.Custom"}]))
    (folder / "config.json").write_text(json.dumps({"model_type": "custom"}))
    save_file({
        "embed.weight": torch.randn(300, 8, generator=generator),
        "position_ids": torch.arange(64).unsqueeze(0) + seed,
        "mask": torch.rand(4, generator=generator) > 0.5,
    }, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(b"stale")
    (folder / "checkpoint-5").mkdir()
    (folder / "checkpoint-5" / "trainer_state.json").write_text("{}")
    return folder


def test_integer_tensors_are_copied_and_large_ones_chunked(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "CHUNK_BYTES", 1024)  # embed.weight (9.6 kB) goes in row chunks
    monkeypatch.setattr(streaming, "MAPPED_BYTES", 2048)  # and handles are reopened along the way
    first, second = _synthetic_folder(tmp_path / "one", 1), _synthetic_folder(tmp_path / "two", 2)
    embed = read_model_folder(first).modules[0].tensors["embed.weight"]
    assert len(list(streaming.row_chunks(embed))) == 10
    out = merge_models([first, second], tmp_path / "out", method="weighted", weights=[3, 1])
    merged, a, b = load_file(out / "model.safetensors"), load_file(first / "model.safetensors"), \
        load_file(second / "model.safetensors")
    assert torch.equal(merged["position_ids"], a["position_ids"])
    assert torch.equal(merged["mask"], a["mask"])
    torch.testing.assert_close(merged["embed.weight"], 0.75 * a["embed.weight"] + 0.25 * b["embed.weight"],
                               atol=1e-6, rtol=0)
    with safe_open(out / "model.safetensors", framework="pt") as merged_file, \
            safe_open(first / "model.safetensors", framework="pt") as first_file:
        assert merged_file.metadata() == {"format": "pt"}
        assert list(merged_file.offset_keys()) == list(first_file.offset_keys())  # same layout
    assert not (out / "onnx").exists() and not (out / "checkpoint-5").exists()
    assert (out / "config.json").exists()
    assert yaml.safe_load((out / MERGE_RECORD).read_text())["left_out"] == [
        "checkpoint-5/ (not a module's folder)", "onnx/ (export of the unmerged weights)"]


def test_folders_saved_by_other_transformers_versions_merge(tmp_path):
    # versions differ in whether BERT's position_ids buffer is saved at all, and in which config
    # defaults they write out (the bundled MiniLM was saved by transformers 4.8, a finetune by 5.x)
    with_buffer, without = _synthetic_folder(tmp_path / "with", 1), _synthetic_folder(tmp_path / "without", 2)
    _rewrite_tensors(without, lambda name, tensor: None if name == "position_ids" else tensor)
    (without / "config.json").write_text(json.dumps({"model_type": "custom", "is_decoder": False, "use_cache": False}))
    a, b = load_file(with_buffer / "model.safetensors"), load_file(without / "model.safetensors")
    for order, name in (([with_buffer, without], "kept"), ([without, with_buffer], "dropped")):
        merged = load_file(merge_models(order, tmp_path / name, method="uniform") / "model.safetensors")
        torch.testing.assert_close(merged["embed.weight"], (a["embed.weight"] + b["embed.weight"]) / 2, atol=1e-6, rtol=0)
        assert ("position_ids" in merged) == (name == "kept")
        if name == "kept":
            assert torch.equal(merged["position_ids"], a["position_ids"])


def test_streaming_soup_imports_neither_sentence_transformers_nor_mergekit(tmp_path):
    first, second = _synthetic_folder(tmp_path / "one", 1), _synthetic_folder(tmp_path / "two", 2)
    code = (
        "import sys; from soupkit.merge import merge_models; "
        f"merge_models([{str(first)!r}, {str(second)!r}], {str(tmp_path / 'out')!r}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sentence_transformers', 'mergekit', 'transformers'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- checks before anything is written


def _variant(models: dict[str, Path], tmp_path: Path, name: str) -> Path:
    variant = tmp_path / name
    shutil.copytree(models["b"], variant)
    return variant


def _one_line_error(inputs: list[Path], out: Path, **kwargs) -> str:
    with pytest.raises(SoupkitError) as caught:
        merge_models(inputs, out, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 2
    assert_nothing_written(out.parent, out)
    return message


def test_different_shapes_are_refused(models, tmp_path):
    narrow = _variant(models, tmp_path, "narrow")
    config = json.loads((narrow / "2_Dense" / "config.json").read_text())
    (narrow / "2_Dense" / "config.json").write_text(json.dumps({**config, "out_features": 8}))
    _rewrite_tensors(narrow / "2_Dense", lambda name, tensor: tensor[:8])
    message = _one_line_error([models["a"], narrow], tmp_path / "out")
    assert "narrow/2_Dense/model.safetensors: tensor 'linear.weight' has shape [8, 32]" in message
    assert "2_Dense/model.safetensors has [16, 32]" in message


def test_missing_tensor_is_refused(models, tmp_path):
    missing = _variant(models, tmp_path, "missing")
    _rewrite_tensors(missing, lambda name, tensor: None if name == "pooler.dense.bias" else tensor)
    message = _one_line_error([models["a"], missing], tmp_path / "out", method="ties", base=models["base"])
    assert "missing/model.safetensors: tensor 'pooler.dense.bias' is missing" in message


def test_different_vocabulary_is_refused(models, tmp_path):
    renamed = _variant(models, tmp_path, "renamed")
    tokenizer = json.loads((renamed / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    token = next(t for t, i in vocab.items() if i == 7)
    vocab["zzzz"] = vocab.pop(token)
    (renamed / "tokenizer.json").write_text(json.dumps(tokenizer))
    message = _one_line_error([models["a"], renamed], tmp_path / "out")
    assert "renamed/tokenizer.json: tokenizer vocabulary differs" in message
    assert f"first difference at id 7: 'zzzz' vs {token!r}" in message


def test_different_module_config_is_refused(models, tmp_path):
    cls_pooling = _variant(models, tmp_path, "cls_pooling")
    config_file = cls_pooling / "1_Pooling" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    message = _one_line_error([models["a"], cls_pooling], tmp_path / "out")
    assert "cls_pooling/1_Pooling/config.json: 'pooling_mode_cls_token' is True" in message


def test_pickled_weights_are_refused(models, tmp_path):
    pickled = _variant(models, tmp_path, "pickled")
    dense = pickled / "2_Dense"
    torch.save(load_file(dense / "model.safetensors"), dense / "pytorch_model.bin")
    (dense / "model.safetensors").unlink()
    message = _one_line_error([models["a"], pickled], tmp_path / "out")
    assert "pickled/2_Dense/pytorch_model.bin: pickled weights are not read" in message


def test_failed_merge_leaves_nothing_behind(models, tmp_path, monkeypatch):
    def half_write(inputs, weights, destination):
        (destination / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(streaming, "stream_weighted_average", half_write)
    with pytest.raises(RuntimeError, match="disk full"):
        merge_models([models["a"], models["b"]], tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_existing_output_needs_overwrite(models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SoupkitError, match="already exists"):
        merge_models([models["a"], models["b"]], out)
    # a folder soupkit did not write is never replaced, even with overwrite
    with pytest.raises(SoupkitError, match="replaces only a merged model soupkit wrote"):
        merge_models([models["a"], models["b"]], out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # a soupkit merge is replaced whole with overwrite, and nothing is left beside it
    merged = tmp_path / "merged"
    merge_models([models["a"], models["b"]], merged)
    (merged / "stale.txt").write_text("old")
    merge_models([models["a"], models["b"]], merged, overwrite=True, weights=None)
    assert not (merged / "stale.txt").exists() and (merged / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "out"]


def test_usage_errors_are_one_line(models, tmp_path):
    inputs = [models["a"], models["b"]]
    with pytest.raises(SoupkitError, match="did you mean 'uniform'"):
        merge_models(inputs, tmp_path / "out", method="unifrom")
    with pytest.raises(SoupkitError, match="needs --weights"):
        merge_models(inputs, tmp_path / "out", method="weighted")
    with pytest.raises(SoupkitError, match="3 values for 2 model"):
        merge_models(inputs, tmp_path / "out", method="weighted", weights=[1, 2, 3])
    with pytest.raises(SoupkitError, match="exactly 2 models"):
        merge_models(inputs, tmp_path / "out", method="slerp", base=models["base"])
    with pytest.raises(SoupkitError, match="Unknown parameter.*densty"):
        merge_models(inputs, tmp_path / "out", method="ties", base=models["base"], parameters={"densty": 0.5})
    with pytest.raises(SoupkitError, match="inside input"):
        merge_models(inputs, models["a"] / "merged")
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_cli_helpers_parse_weights_and_parameters():
    assert parse_weights("1, 2,0.5") == [1.0, 2.0, 0.5]
    assert parse_parameters(["density=0.5", "normalize=false", "t=[0, 1]"]) == {
        "density": 0.5, "normalize": False, "t": [0, 1]}
    with pytest.raises(SoupkitError, match="not a number"):
        parse_weights("1,x")
    with pytest.raises(SoupkitError, match="KEY=VALUE"):
        parse_parameters(["density"])


def test_dare_is_seeded(models, tmp_path):
    def dare(name: str, seed: int) -> Path:
        parameters = {"density": 0.5, "seed": seed}
        return run_method("dare_linear", models, tmp_path / name, parameters=parameters)

    first = dare("first", 0)
    assert_same_tensors(first, dare("again", 0), atol=0)
    with pytest.raises(AssertionError):
        assert_same_tensors(first, dare("other", 1))
    assert yaml.safe_load((tmp_path / "first" / MERGE_RECORD).read_text())["parameters"] == {
        "density": 0.5, "seed": 0}
