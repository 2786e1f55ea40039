"""Security: safetensors only (a pickle can run code when loaded), no model code without a flag,
YAML loaded safely, the dashboard on 127.0.0.1 unless --host says otherwise."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import soupkit
from soupkit.base_model import load_model
from soupkit.cli import main
from soupkit.errors import SoupkitError

SOURCE = Path(soupkit.__file__).parent


def pickled_copy(model: Path, folder: Path, keep_config_only: bool = False) -> Path:
    """The model with its backbone weights as pytorch_model.bin (a pickle) instead of safetensors."""
    shutil.copytree(model, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    if keep_config_only:  # a plain transformers folder, no sentence-transformers modules
        for extra in ("modules.json", "1_Pooling", "2_Dense", "3_Normalize"):
            shutil.rmtree(folder / extra) if (folder / extra).is_dir() else (folder / extra).unlink()
    return folder


@pytest.mark.parametrize("plain", [False, True], ids=["sentence-transformers", "transformers"])
def test_a_base_model_with_pickled_weights_only_is_refused(one_line_error, search_command, tiny_recipe_file, tiny_model, tmp_path, plain):
    pickled = pickled_copy(tiny_model, tmp_path / "pickled", keep_config_only=plain)
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    one_line_error(search_command(recipe, tmp_path / "run", "--base", str(pickled)),
                   f"{pickled / 'pytorch_model.bin'}: pickled weights are not read", workdir=tmp_path)
    with pytest.raises(SoupkitError, match="pickled weights are not read"):
        load_model(str(pickled), "cpu")


def test_a_model_with_its_own_code_is_not_run_without_the_flag(one_line_error, search_command, tiny_recipe_file, tiny_model, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.json").write_text('{"model_type": "evil", "architectures": ["EvilModel"], "auto_map": '
                                      '{"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.M"}}')
    payload = f"import pathlib\npathlib.Path({str(tmp_path / 'ran')!r}).write_text('ran')\n"
    (evil / "configuration_evil.py").write_text(payload)
    (evil / "modeling_evil.py").write_text(payload)
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    one_line_error(search_command(recipe, tmp_path / "run", "--base", str(evil)), "contains custom code",
                   "--trust-remote-code", workdir=tmp_path)
    assert not (tmp_path / "ran").exists()


def test_models_are_loaded_from_safetensors_without_remote_code(tiny_model, monkeypatch):
    import sentence_transformers

    seen = {}

    def fake_model(ref, **kwargs):
        seen.update(kwargs, ref=ref)
        return "model"

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", fake_model)
    load_model(str(tiny_model), "cpu")
    assert seen["trust_remote_code"] is False and seen["model_kwargs"] == {"use_safetensors": True}
    load_model(str(tiny_model), "cpu", trust_remote_code=True)
    assert seen["trust_remote_code"] is True


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["--trust-remote-code"], True)])
def test_search_trusts_remote_code_only_with_the_flag(monkeypatch, tmp_path, flag, expected):
    import soupkit.search.run

    seen = {}

    def fake_search(*args, **kwargs):
        seen.update(kwargs)
        raise SoupkitError("stop here")

    monkeypatch.setattr(soupkit.search.run, "run_search", fake_search)
    result = CliRunner().invoke(main, ["search", "--out", str(tmp_path / "run"), *flag])
    assert result.output.strip() == "error: stop here"
    assert seen["trust_remote_code"] is expected


def test_no_code_turns_on_remote_code_or_unsafe_loading():
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        assert not re.search(r"yaml\.(load|full_load|unsafe_load)\(|Loader\s*=", text), path
        assert "torch.load(" not in text and "pickle.load" not in text, path


def test_yaml_tags_that_run_code_are_refused(one_line_error, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: !!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\nfamilies: [x]\n")
    one_line_error(["validate", str(recipe)], f"{recipe}:", "malformed YAML", workdir=tmp_path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("flag", "host", "warned"),
    [([], "127.0.0.1", False), (["--host", "localhost"], "localhost", False), (["--host", "::1"], "::1", False),
     (["--host", "0.0.0.0"], "0.0.0.0", True)],
)
def test_dashboard_listens_on_loopback_unless_told(monkeypatch, tmp_path, flag, host, warned):
    """Issue 11 #6: a non-loopback --host used to serve the study to the network without a word."""
    import optuna_dashboard

    from soupkit.search.study import default_storage, open_storage

    open_storage(default_storage(tmp_path), create=True)
    seen = {}
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(main, ["dashboard", "--out", str(tmp_path), "--port", "0", *flag])
    assert result.exit_code == 0, result.output
    assert seen["host"] == host
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert bool(warning) == warned, result.stderr
    if warned:
        assert "anyone who can reach this machine" in warning[0] and "SSH tunnel" in warning[0]
