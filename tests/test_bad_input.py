"""Bad input through the CLI: one line that names the problem and where, exit code 2, nothing written.

Recipe mistakes that `soupkit validate` already reports are in test_config.py and the merge checks
in test_merge.py; here each mistake goes through the command that would act on it (search, merge,
soup, dashboard) and nothing may be left behind: no run folder, no study, no merged folder.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file


BASE = "name: t\nfamilies: [medical-icd10, medical-icd10-chapters]\n"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("name: t\nfamilies: [medical-icd10\n", ["malformed YAML", "line 3"]),
        (BASE + "finetune: {stepz: 3}\n", ["unknown key 'finetune.stepz'"]),
        ("name: t\nfamilies: [medical-icd1O]\n", ["unknown family 'medical-icd1O'; did you mean 'medical-icd10'?"]),
        (BASE + "seed_mixture: {medical-icd10: -1}\n", ["seed_mixture: weight of 'medical-icd10' must be"]),
        (BASE + "seed_mixture: {medical-icd10: lots}\n", ["seed_mixture.medical-icd10: Input should be a valid number"]),
        (BASE + "seed_mixture: {medical-icd10: 0, medical-icd10-chapters: 0}\n", ["seed_mixture: weights are all zero"]),
        (BASE + "search: {budget: -1}\n", ["search.budget: Input should be greater than 0"]),
    ],
    ids=["malformed-yaml", "unknown-key", "unknown-family", "negative-weight", "weight-not-a-number",
         "zero-weights", "negative-budget"],
)
def test_a_bad_recipe_is_one_line_and_search_writes_nothing(one_line_error, search_command, tmp_path, text, needles):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    one_line_error(search_command(recipe, tmp_path / "run"), str(recipe), *needles, workdir=tmp_path)


def test_a_bad_mixture_file_names_the_mixture_file(one_line_error, search_command, tmp_path):
    (tmp_path / "mix.yaml").write_text("weights: [1, 2]\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(BASE + f"seed_mixture: {tmp_path / 'mix.yaml'}\n")
    one_line_error(search_command(recipe, tmp_path / "run"), f"{tmp_path / 'mix.yaml'}: weights: Input should be a valid "
                   "dictionary", workdir=tmp_path)


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_budget_must_be_positive(one_line_error, tmp_path, budget):
    one_line_error(["search", "--budget", budget, "--out", str(tmp_path / "run")],
                   f"--budget must be a positive number of trials, got {budget}", workdir=tmp_path)


def test_missing_base_model_path(one_line_error, search_command, tiny_recipe_file, tiny_model, tmp_path):
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    one_line_error(search_command(recipe, tmp_path / "run", "--base", str(tmp_path / "no-such-model")),
                   f"base model path not found: {tmp_path / 'no-such-model'}", workdir=tmp_path)


def truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors_as_base(one_line_error, search_command, tiny_recipe_file, tiny_model, tmp_path, damage):
    weights = tiny_model / "model.safetensors"
    truncate(weights) if damage == "truncated" else weights.write_bytes(b"\x00not safetensors at all")
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    one_line_error(search_command(recipe, tmp_path / "run", "--base", str(tiny_model)),
                   f"{weights}: not a readable safetensors file", workdir=tmp_path)


def test_missing_model_folder_in_a_merge(one_line_error, tiny_model, tmp_path):
    one_line_error(["merge", str(tiny_model), str(tmp_path / "nowhere"), "--out", str(tmp_path / "soup")],
                   f"model folder not found: {tmp_path / 'nowhere'}", workdir=tmp_path)


def test_corrupt_safetensors_in_a_merge(one_line_error, tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    truncate(broken / "2_Dense" / "model.safetensors")
    one_line_error(["merge", str(tiny_model), str(broken), "--out", str(tmp_path / "soup")],
                   f"{broken / '2_Dense' / 'model.safetensors'}: not a readable safetensors file", workdir=tmp_path)


def test_merging_incompatible_models(one_line_error, tiny_model, tmp_path):
    narrow = tmp_path / "narrow"
    shutil.copytree(tiny_model, narrow)
    dense = narrow / "2_Dense"
    weight = load_file(dense / "model.safetensors")["linear.weight"]
    save_file({"linear.weight": weight[:8].contiguous()}, dense / "model.safetensors")
    config = json.loads((dense / "config.json").read_text())
    (dense / "config.json").write_text(json.dumps({**config, "out_features": 8}))
    one_line_error(["merge", str(tiny_model), str(narrow), "--out", str(tmp_path / "soup")],
                   "tensor 'linear.weight' has shape [8, 32]", workdir=tmp_path)


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        (["search", "--budget", "1"], ["cannot open study storage 'postgresql://127.0.0.1:1/x'", "refused"]),
        (["soup"], ["cannot open study storage 'postgresql://127.0.0.1:1/x'"]),
        (["dashboard"], ["cannot open study storage 'postgresql://127.0.0.1:1/x'"]),
    ],
    ids=["search", "soup", "dashboard"],
)
def test_unreachable_storage_fails_fast(one_line_error, tiny_recipe_file, tiny_model, tmp_path, command, needles):
    if command[0] == "search":
        command = [*command, "--recipe", str(tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml"))]
    start = time.monotonic()
    one_line_error([*command, "--storage", "postgresql://127.0.0.1:1/x", "--out", str(tmp_path / "run")], *needles,
                   workdir=tmp_path)
    assert time.monotonic() - start < 15


def test_unknown_storage_scheme(one_line_error, tmp_path):
    one_line_error(["search", "--storage", "mysql+nosuchdriver://u:pw@127.0.0.1/x", "--out", str(tmp_path / "run")],
                   "cannot open study storage 'mysql+nosuchdriver://u:***@127.0.0.1/x': Can't load plugin",
                   workdir=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("pymysql") is not None, reason="pymysql is installed here")
def test_missing_database_driver_names_the_package(one_line_error, tmp_path):
    one_line_error(["search", "--storage", "mysql+pymysql://u:pw@127.0.0.1/x", "--out", str(tmp_path / "run")],
                   "database driver 'pymysql' is not installed; install it with: pip install pymysql",
                   workdir=tmp_path)


def test_missing_data_package_names_what_to_install(one_line_error, search_command, tiny_recipe_file, tiny_model, tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without_icd10(name, *args, **kwargs):
        return None if name == "simple_icd_10_cm" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_icd10)
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    one_line_error(search_command(recipe, tmp_path / "run"),
                   "family 'medical-icd10': PyPI package simple-icd-10-cm is missing; "
                   "install it with: pip install simple-icd-10-cm", workdir=tmp_path)


def test_dashboard_port_in_use_is_one_line(one_line_error, tmp_path):
    import socket

    from soupkit.search.study import open_storage

    open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line_error(["dashboard", "--out", str(tmp_path), "--port", str(port)],
                       f"dashboard cannot listen on 127.0.0.1:{port}: Address already in use", workdir=tmp_path)
