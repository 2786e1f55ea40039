"""`soupkit ingredients` on a tiny real study: the choice, the record beside the search's, resume,
reuse, another base, crash safety; and `soupkit soup --from ingredients`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from soupkit.cli import main
from soupkit.config import IngredientSpec, Recipe
from soupkit.errors import SoupkitError
from soupkit.search.checkpoints import OWNER_FILE
from soupkit.search.study import default_storage, open_storage, search_study_names
from soupkit.soups.ingredient_study import find_ingredient_study, load_set
from soupkit.soups.ingredients import (
    choose_ingredients,
    ingredient_soup_source,
    make_ingredients,
)
from soupkit.soups.selection import (
    Candidate,
    choose_diverse,
    choose_top,
    simplex_distance,
)
from soupkit.soups.study_soup import build_soup

QUIET = {"log": lambda s: None, "show_progress": False}


# --- the choice: pure functions, exact values -------------------------------------------------

def test_simplex_distance_is_total_variation_of_the_normalised_mixtures():
    assert simplex_distance({"a": 1, "b": 1}, {"a": 2, "b": 2}) == 0.0
    assert simplex_distance({"a": 1}, {"b": 5}) == 1.0
    assert simplex_distance({"a": 3, "b": 1}, {"a": 1, "b": 1}) == pytest.approx(0.25)  # |.75-.5| + |.25-.5|, halved
    assert simplex_distance({"a": 1, "b": 0}, {"a": 1, "c": 1}) == pytest.approx(0.5)  # absent families weigh 0


def test_diverse_choice_is_greedy_max_min_and_top_is_the_best_k():
    pool = [
        Candidate(7, {"a": 0.9, "b": 0.1, "c": 0.0}),  # best
        Candidate(3, {"a": 0.85, "b": 0.15, "c": 0.0}),  # a near-copy of the best
        Candidate(5, {"a": 0.0, "b": 0.1, "c": 0.9}),  # far from the best
        Candidate(9, {"a": 0.4, "b": 0.6, "c": 0.0}),  # between
    ]
    assert [c.trial for c in choose_top(pool, 2)] == [7, 3]
    assert [c.trial for c in choose_diverse(pool, 2)] == [7, 5]
    # third: the candidate whose nearest chosen mixture is farthest (9: 0.5 from 7, 0.8 from 5; 3: 0.05)
    assert [c.trial for c in choose_diverse(pool, 3)] == [7, 5, 9]
    assert [c.trial for c in choose_diverse(pool, 10)] == [7, 5, 9, 3]  # never more than the pool
    for k in range(1, 5):  # a larger k extends a smaller one's choice
        assert choose_diverse(pool, k) == choose_diverse(pool, 4)[:k]
    # ties go to the better-ranked candidate
    twins = [Candidate(1, {"a": 1.0}), Candidate(2, {"b": 1.0}), Candidate(3, {"c": 1.0})]
    assert [c.trial for c in choose_diverse(twins, 2)] == [1, 2]


def test_ingredient_spec_lays_its_budget_over_the_finetune_settings():
    recipe = Recipe.model_validate({"name": "r", "families": ["medical-icd10"],
                                    "finetune": {"steps": 24, "batch_size": 16, "learning_rate": 1e-4},
                                    "ingredients": {"steps": 240, "learning_rate": 3e-5}})
    spec = recipe.ingredients.finetune_spec(recipe.finetune)
    assert (spec.steps, spec.batch_size, spec.learning_rate) == (240, 16, 3e-5)
    assert spec.warmup_ratio == recipe.finetune.warmup_ratio
    with pytest.raises(ValueError, match="stpes"):
        Recipe.model_validate({"name": "r", "families": ["medical-icd10"], "ingredients": {"stpes": 3}})
    with pytest.raises(ValueError):
        IngredientSpec(k=0)


# --- on a tiny real study ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def searched(tiny_model_dir, tmp_path_factory, tiny_recipe, search):
    """One finished 4-trial search of the tiny recipe (with a small held-out probe) per module."""
    recipe = tiny_recipe(tiny_model_dir).model_dump(mode="json")
    recipe["probe_only"] = ["legal-wordnet"]
    recipe["probes"]["sizes"] = {"legal-wordnet": {"probe_size": 40, "probe_corpus": 80}}
    out = tmp_path_factory.mktemp("searched") / "run"
    search(Recipe.model_validate(recipe), out, budget=4)
    return out


@pytest.fixture
def study_run(searched, tmp_path):
    """A copy of the searched run folder: (run folder, storage, search study)."""
    out = tmp_path / "run"
    shutil.copytree(searched, out)
    storage = open_storage(default_storage(out))
    return out, storage, optuna.load_study(study_name="tiny", storage=storage)


def spec(k=2, steps=4, **kw) -> IngredientSpec:
    return IngredientSpec(k=k, steps=steps, **kw)


@pytest.mark.slow
def test_ingredients_are_trained_recorded_beside_the_search_and_reused(study_run):
    out, storage, study = study_run
    search_trials = [(t.number, t.state, t.params) for t in study.get_trials()]
    result = make_ingredients(storage, study, out, spec(), **QUIET)

    chosen = result.chosen
    assert chosen.name == "diverse2-4steps" and chosen.k == 2 and len(set(chosen.sources)) == 2
    expected = choose_ingredients(study, Recipe.model_validate(json.loads(study.user_attrs["recipe"])), spec(),
                                  chosen.base, chosen.name)
    assert chosen.sources == expected.sources and chosen.mixtures == expected.mixtures
    assert chosen.distances[0][1] == chosen.distances[1][0] > 0
    # the ingredient study sits beside the search study; the search study is untouched
    assert search_study_names(storage) == ["tiny"]
    assert [(t.number, t.state, t.params) for t in study.get_trials()] == search_trials
    ing = find_ingredient_study(storage, study)
    assert ing.study_name == "tiny.ingredients"
    trials = ing.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial, source, mixture in zip(trials, chosen.sources, chosen.mixtures):
        attrs = trial.user_attrs
        assert attrs["source_trial"] == source
        assert attrs["mixture"] == pytest.approx(mixture, abs=1e-6)
        assert attrs["finetune"]["steps"] == 4 and attrs["finetune"]["batch_size"] == 4  # batch from `finetune`
        ckpt = Path(attrs["checkpoint"])
        assert ckpt.parent == out / "ingredients" and ckpt.name == f"ingredient-{trial.number:04d}"
        assert {"modules.json", "model.safetensors", "mixture.yaml", "soupkit_ingredient.yaml"} <= {
            p.name for p in ckpt.iterdir()}
        record = yaml.safe_load((ckpt / "soupkit_ingredient.yaml").read_text())
        assert record["scores"] == attrs["scores"] and record["source_trial"] == source
        assert trial.values[0] == pytest.approx(attrs["objective"])
    assert load_set(ing, None).ingredients == [t.number for t in trials]

    # the same command again trains nothing; a set sharing a mixture reuses that ingredient
    again = make_ingredients(storage, study, out, spec(), **QUIET)
    assert again.reused == chosen.ingredients and len(ing.get_trials()) == 2
    top = make_ingredients(storage, study, out, spec(k=3, select="top"), **QUIET)
    assert top.chosen.sources[0] == chosen.sources[0] and top.reused[0] == chosen.ingredients[0]
    assert len(find_ingredient_study(storage, study).get_trials()) == 2 + len(top.chosen.sources) - len(top.reused)
    # a recorded set is not silently re-chosen with other settings
    with pytest.raises(SoupkitError, match="ingredient set 'diverse2-4steps' was made with another pool"):
        make_ingredients(storage, study, out, spec(pool=2), **QUIET)


@pytest.mark.slow
def test_soup_of_ingredients_averages_them_and_is_recorded_in_the_ingredient_study(study_run):
    out, storage, study = study_run
    made = make_ingredients(storage, study, out, spec(), **QUIET)
    source = ingredient_soup_source(storage, study)
    assert sorted(c.trial for c in source.candidates) == sorted(made.chosen.ingredients)
    result = build_soup(study, out, method="uniform", top_k=2, log=lambda s: None, source=source)
    assert result.name == "uniform-diverse2-4steps-top2" and result.label == "ingredient"
    a, b = (load_file(c.checkpoint / "model.safetensors") for c in source.candidates)
    for key, tensor in load_file(result.path / "model.safetensors").items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, (a[key] + b[key]) / 2, atol=1e-6)
    soups = find_ingredient_study(storage, study).user_attrs["soups"]
    assert soups[result.name]["members"] == result.members
    assert "soups" not in study.user_attrs  # member numbers are ingredients, not search trials
    greedy = build_soup(study, out, method="greedy", top_k=2, log=lambda s: None, source=source)
    assert greedy.objective >= max(c.objective for c in source.candidates) - 1e-9


@pytest.mark.slow
def test_ingredients_from_another_base_are_scored_against_that_base(study_run, tmp_path, tiny_bert):
    out, storage, study = study_run
    other = tiny_bert(tmp_path / "other-base", seed=1)
    result = make_ingredients(storage, study, out, spec(k=1), base=str(other), **QUIET)
    assert result.chosen.name == "diverse1-4steps-other-base"
    ing = find_ingredient_study(storage, study)
    assert ing.user_attrs["bases"][str(other)] == result.base_scores
    assert result.base_scores != study.user_attrs["base_scores"]
    source = ingredient_soup_source(storage, study)
    assert source.recipe.base == str(other) and source.base_scores == result.base_scores
    soup = build_soup(study, out, method="uniform", top_k=1, log=lambda s: None, source=source, with_base=True)
    assert (out / "base-model-other-base" / "modules.json").is_file()
    assert soup.base_scores == result.base_scores
    # `soupkit adapt` finds the ingredients, their soup and both bases in the run's storage
    from soupkit.soups.bank import collect_bank

    bank = collect_bank([out], log=lambda s: None)
    kinds = [m.kind for m in bank]
    assert kinds.count("ingredient") == 1 and kinds.count("base") == 2
    assert any(m.kind == "soup" and m.path == soup.path.resolve() for m in bank)


@pytest.mark.slow
def test_ingredients_cli_prints_the_choice_and_soup_cli_compares_on_held_out_probes(study_run):
    out, _, _ = study_run
    done = CliRunner().invoke(main, ["ingredients", "--out", str(out), "--k", "2", "--steps", "3", "--quiet"])
    assert done.exit_code == 0, done.output
    assert "ingredient set 'diverse2-3steps': 2 mixtures (diverse choice among the best 4)" in done.output
    assert "pairwise distance" in done.output and "ingredient 0 (trial" in done.output
    soup = CliRunner().invoke(main, ["soup", "--out", str(out), "--from", "ingredients"])
    assert soup.exit_code == 0, soup.output
    assert "soup uniform-diverse2-3steps-top2" in soup.output
    assert "held-out probes: the soup against each candidate and the base model" in soup.output
    assert "soup - ingredient 0" in soup.output and "soup - base" in soup.output
    assert "legal-wordnet (" in soup.output
    # the report and the trial soups still find the search study among the two
    report = CliRunner().invoke(main, ["report", "--out", str(out), "--no-attach"])
    assert report.exit_code == 0, report.output
    trials = CliRunner().invoke(main, ["soup", "--out", str(out), "--top-k", "2", "--no-intervals"])
    assert trials.exit_code == 0 and "soup uniform-top2" in trials.output


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "error: --k: Input should be greater than or equal to 1"),
    (["--k", "9"], "error: --k 9 needs 9 distinct mixtures, but study 'tiny' has 4 completed; search longer or ask for fewer"),
    (["--base", "/nowhere/model"], "error: base model path not found: /nowhere/model"),
])
def test_ingredients_bad_input_is_one_line(study_run, args, message):
    out, _, _ = study_run
    done = CliRunner().invoke(main, ["ingredients", "--out", str(out), "--quiet", *args])
    assert done.exit_code == 2
    assert done.output.strip() == message
    assert not (out / "ingredients").exists()


@pytest.mark.slow
def test_soup_from_ingredients_without_any_says_how_to_make_them(study_run):
    out, _, _ = study_run
    done = CliRunner().invoke(main, ["soup", "--out", str(out), "--from", "ingredients"])
    assert done.exit_code == 2
    assert done.output.strip() == ("error: study 'tiny' has no ingredients yet; make them with "
                                   "`soupkit ingredients --out RUN`")


@pytest.mark.slow
def test_ingredients_killed_mid_finetune_resume_with_the_same_mixture(study_run, tmp_path, run_until_paused):
    import signal

    from soupkit.model_folder import read_model_folder

    out, storage, study = study_run
    args = ["ingredients", "--out", str(out), "--k", "2", "--steps", "3", "--quiet"]
    # the second ingredient's checkpoint is half written when it pauses
    proc = run_until_paused(args, "finetune:2", tmp_path, timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ing = find_ingredient_study(storage, study)
    chosen = load_set(ing, None)
    assert [t.state.name for t in ing.get_trials()] == ["COMPLETE", "RUNNING"]
    assert chosen.ingredients == [0, None]
    assert any(p.name.startswith(".tmp-ingredient-0001-") for p in (out / "ingredients").iterdir())

    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    ing = find_ingredient_study(storage, study)
    trials = ing.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    resumed = load_set(ing, None)
    assert resumed.sources == chosen.sources and resumed.ingredients == [0, 2]
    assert trials[2].user_attrs["mixture"] == trials[1].user_attrs["mixture"]  # the same mixture, again
    folders = [p for p in (out / "ingredients").iterdir() if p.name != OWNER_FILE]  # the folder's owner file stays
    assert not [p for p in folders if p.name.startswith(".")]
    for folder in folders:
        assert {"modules.json", "model.safetensors", "mixture.yaml"} <= {p.name for p in folder.iterdir()}
        read_model_folder(folder)  # every safetensors file whole


def test_a_study_resumes_across_a_changed_ingredients_section():
    from soupkit.search.run import effective_recipe_json
    from soupkit.search.study import check_same_recipe

    recipe = Recipe.model_validate({"name": "r", "families": ["medical-icd10"]})
    study = optuna.create_study()
    check_same_recipe(study, effective_recipe_json(recipe))
    longer = Recipe.model_validate({**recipe.model_dump(mode="json"), "ingredients": {"k": 8, "steps": 960}})
    check_same_recipe(study, effective_recipe_json(longer))  # what a trial produces is unchanged
    with pytest.raises(SoupkitError, match="field 'finetune' differs"):
        changed = Recipe.model_validate({**recipe.model_dump(mode="json"), "finetune": {"steps": 5}})
        check_same_recipe(study, effective_recipe_json(changed))


def test_differences_give_the_soup_minus_each_model_with_paired_intervals():
    import numpy as np

    from soupkit.soups.compare import differences, differences_table

    items = {"soup": {"p": np.array([1.0, 1.0, 0.0, 1.0]), "set-scored": None},
             "a": {"p": np.array([1.0, 1.0, 0.0, 1.0]), "set-scored": None},
             "b": {"p": np.array([0.0, 0.0, 0.0, 0.0]), "set-scored": None}}
    found = differences(items, "soup", ["a", "b"])
    assert [(d.probe, d.other, d.mean, d.low, d.high, d.items) for d in found] == [
        ("p", "a", 0.0, 0.0, 0.0, 4), ("p", "b", 0.75, pytest.approx(0.25), 1.0, 4)]
    assert found[1].cell() == "+75.0 [+25.0, +100.0]" and not found[1].below
    worse = differences({"soup": items["b"], "a": items["a"]}, "soup", ["a"])[0]
    assert worse.below and worse.high < 0
    table = differences_table(found, "soup")
    assert "p (4 items)" in table and "soup - b" in table and "+75.0 [+25.0, +100.0]" in table
