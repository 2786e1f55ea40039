"""Soups from a tiny real study: uniform top-k, greedy, recorded in the study, scores reproducible."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from soupkit.cli import main
from soupkit.config import ObjectiveSpec
from soupkit.soups.study_soup import BASE_SHARES, GreedyCriterion, build_soup, ranked_ingredients, study_recipe
from soupkit.probes.score import study_values
from soupkit.search.study import default_storage, open_study


@pytest.fixture
def tiny_study(search, tiny_recipe, tiny_model, tmp_path):
    out = tmp_path / "run"
    search(tiny_recipe(tiny_model), out, budget=3)
    return out, open_study(default_storage(out), "tiny", None, ["maximize"])


@pytest.mark.slow
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


@pytest.mark.slow
def test_greedy_soup_never_scores_below_its_best_ingredient(tiny_study):
    out, study = tiny_study
    result = build_soup(study, out, method="greedy", top_k=3, log=lambda s: None)
    best = ranked_ingredients(study)[0]
    assert result.members[0] == best.trial
    assert result.objective >= best.objective - 1e-9


@pytest.mark.slow
def test_soup_cli_prints_table_and_errors_cleanly(tiny_study, tmp_path):
    out, _ = tiny_study
    done = CliRunner().invoke(main, ["soup", "--out", str(out), "--top-k", "2"])
    assert done.exit_code == 0, done.output
    assert "soup uniform-top2" in done.output and "base" in done.output
    missing = CliRunner().invoke(main, ["soup", "--out", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert missing.output.strip().startswith("error: no study found")


def test_greedy_criterion_puts_the_general_bound_before_the_domain_score():
    objective = ObjectiveSpec(mode="pareto", domain=["d1", "d2"], weights={"d2": 3})
    base = {"d1": 0.5, "d2": 0.5, "g1": 0.80, "g2": 0.60}
    criterion = GreedyCriterion(objective, base, tolerance=0.01)
    inside = {"d1": 0.6, "d2": 0.7, "g1": 0.795, "g2": 0.70, "g2@int8": 0.0}  # views are not probes
    outside = {"d1": 0.9, "d2": 0.9, "g1": 0.75, "g2": 0.58}
    assert criterion.general_shortfall(inside) == 0.0
    assert criterion.general_shortfall(outside) == pytest.approx((0.79 - 0.75) + (0.59 - 0.58))
    assert criterion.key(inside) == (0.0, pytest.approx((0.6 + 3 * 0.7) / 4))
    assert criterion.key(inside) > criterion.key(outside)  # a far better domain score does not buy it back
    assert GreedyCriterion(objective, base, tolerance=None).key(outside) > criterion.key(inside)
    weighted = GreedyCriterion(ObjectiveSpec(), base)
    assert weighted.key(outside) == (0.0, pytest.approx((0.9 + 0.9 + 0.75 + 0.58) / 4))


@pytest.fixture
def pareto_study(search, tiny_recipe, tiny_model, tmp_path):
    recipe = tiny_recipe(tiny_model)
    recipe = recipe.model_copy(update={"objective": ObjectiveSpec(mode="pareto", domain=["medical-icd10"])})
    out = tmp_path / "run"
    search(recipe, out, budget=3)
    return out, open_study(default_storage(out), "tiny", None, ["maximize", "maximize"]), tiny_model


@pytest.mark.slow
def test_pareto_greedy_soup_with_base_keeps_the_general_bound(pareto_study):
    out, study, base_path = pareto_study
    base_scores = study.user_attrs["base_scores"]
    objective = study_recipe(study).objective
    bound = GreedyCriterion(objective, base_scores, tolerance=0.0)
    logged: list[str] = []
    result = build_soup(study, out, method="greedy", top_k=3, log=logged.append, with_base=True, general_tolerance=0.0)
    # ingredients are chosen for the domain alone: the greedy soup starts from the best domain score
    first = max(ranked_ingredients(study), key=lambda i: (study_values(i.scores, objective)[0], -i.trial))
    assert result.name == "greedy-top3-base"
    assert result.members[0] == first.trial
    shares = [line for line in logged if line.startswith("  base model share ")]
    assert shares[0].startswith("  base model share 0.00: soup ")
    assert result.base_share in (0.0, *BASE_SHARES)
    # the smallest share that is within the bound, else the share of the best key among those tried
    if bound.general_shortfall(result.scores) == 0.0:
        assert len(shares) == [0.0, *BASE_SHARES].index(result.base_share) + 1
    else:
        assert len(shares) == 1 + len(BASE_SHARES)
    # the soup on disk is the average of its members, averaged with the base at that share
    folders = [r.checkpoint for m in result.members for r in ranked_ingredients(study) if r.trial == m]
    tensors = [load_file(f / "model.safetensors") for f in folders]
    base = load_file(base_path / "model.safetensors")
    for key, tensor in load_file(result.path / "model.safetensors").items():
        if tensor.is_floating_point():
            soup = sum(t[key] for t in tensors) / len(tensors)
            expected = (1 - result.base_share) * soup + result.base_share * base[key]
            assert torch.allclose(tensor, expected, atol=1e-6)
    recorded = open_study(default_storage(out), "tiny", None, ["maximize", "maximize"]).user_attrs["soups"]
    assert recorded["greedy-top3-base"]["base_share"] == result.base_share
    assert recorded["greedy-top3-base"]["members"] == result.members


@pytest.mark.slow
def test_with_base_needs_an_averaging_soup(tiny_study):
    out, _ = tiny_study
    done = CliRunner().invoke(main, ["soup", "--out", str(out), "--method", "ties", "--with-base"])
    assert done.exit_code == 2
    assert done.output.strip() == (
        "error: --with-base works with --method uniform or greedy, not 'ties' (it uses the base already)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["uniform", "greedy"])
def test_soup_of_a_trial_without_weights_names_the_file_and_writes_nothing(tiny_study, folder_hash, method):
    """Issue 11 #4: after a trial's model.safetensors was deleted, `soupkit soup` left
    soups/<name> without weights under its final name, and blamed the "base model"."""
    out, study = tiny_study
    best = ranked_ingredients(study)[0]
    (best.checkpoint / "model.safetensors").unlink()
    before = folder_hash(out)
    result = CliRunner().invoke(main, ["soup", "--out", str(out), "--top-k", "1", "--method", method])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: trial {best.trial}: {best.checkpoint / 'model.safetensors'} is missing")
    assert "base model" not in lines[0]
    assert not (out / "soups").exists()
    assert folder_hash(out) == before


@pytest.mark.slow
def test_a_soup_that_fails_while_scored_leaves_nothing_under_its_name(tiny_study, monkeypatch):
    """The soup is merged and scored under a temporary name; only a scored soup is renamed."""
    import soupkit.soups.study_soup as soup_module

    out, study = tiny_study

    def broken_scoring(*args, **kwargs):
        raise RuntimeError("probe crashed")

    monkeypatch.setattr("soupkit.probes.score.score_probes", broken_scoring)
    with pytest.raises(RuntimeError, match="probe crashed"):
        soup_module.build_soup(study, out, method="uniform", top_k=2, log=lambda s: None)
    assert not (out / "soups" / "uniform-top2").exists()
    assert not [p for p in out.iterdir() if p.name.startswith((".tmp-soup", "tmp"))]
