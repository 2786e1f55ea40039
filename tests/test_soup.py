"""Soups from a tiny real study: uniform top-k, greedy, recorded in the study, scores reproducible."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from soupkit.cli import main
from soupkit.merge.soup import build_soup, ranked_ingredients
from soupkit.search.study import default_storage, open_study
from tests.test_search import search, tiny_recipe


@pytest.fixture
def tiny_study(tiny_model, tmp_path):
    out = tmp_path / "run"
    search(tiny_recipe(tiny_model), out, budget=3)
    return out, open_study(default_storage(out), "tiny", None, ["maximize"])


def test_uniform_soup_of_top_two_is_their_average(tiny_study):
    out, study = tiny_study
    ranked = ranked_ingredients(study)
    assert [i.objective for i in ranked] == sorted((i.objective for i in ranked), reverse=True)
    result = build_soup(study, out, method="uniform", top_k=2, log=lambda s: None)
    assert result.members == [ranked[0].trial, ranked[1].trial]
    merged = load_file(result.path / "model.safetensors")
    a = load_file(ranked[0].checkpoint / "model.safetensors")
    b = load_file(ranked[1].checkpoint / "model.safetensors")
    for key, tensor in merged.items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, (a[key] + b[key]) / 2, atol=1e-6)
    # recorded in the study, with the scores of the folder on disk
    soups = open_study(default_storage(out), "tiny", None, ["maximize"]).user_attrs["soups"]
    assert soups["uniform-top2"]["members"] == result.members
    assert soups["uniform-top2"]["scores"] == result.scores
    assert (result.path / "2_Dense").is_dir()


def test_greedy_soup_never_scores_below_its_best_ingredient(tiny_study):
    out, study = tiny_study
    result = build_soup(study, out, method="greedy", top_k=3, log=lambda s: None)
    best = ranked_ingredients(study)[0]
    assert result.members[0] == best.trial
    assert result.objective >= best.objective - 1e-9


def test_soup_cli_prints_table_and_errors_cleanly(tiny_study, tmp_path):
    out, _ = tiny_study
    done = CliRunner().invoke(main, ["soup", "--out", str(out), "--top-k", "2"])
    assert done.exit_code == 0, done.output
    assert "soup uniform-top2" in done.output and "base" in done.output
    missing = CliRunner().invoke(main, ["soup", "--out", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert missing.output.strip().startswith("error: no study found")
