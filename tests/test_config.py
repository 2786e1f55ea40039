"""Recipes and mixtures: every shipped YAML validates; every likely mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from soupkit.cli import main
from soupkit.config import MIXTURES_DIR, RECIPES_DIR, Mixture, load_mixture, load_recipe
from soupkit.data.load import _registry, check_recipe
from soupkit.errors import SoupkitError


BENCH_RECIPES = Path(__file__).resolve().parents[1] / "bench" / "recipes"


@pytest.mark.parametrize("path", sorted([*RECIPES_DIR.glob("*.yaml"), *BENCH_RECIPES.glob("*.yaml")]),
                         ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path: Path):
    recipe = load_recipe(path)
    check_recipe(recipe, path)  # raises on an unknown family, probe or seed-mixture family


@pytest.mark.parametrize("path", sorted(MIXTURES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_mixture_names_known_families(path: Path):
    mixture = load_mixture(path)
    known = _registry()
    assert [f for f in mixture.weights if f not in known] == []


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


BASE = "name: t\nfamilies: [medical-icd10, medical-icd10-chapters]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "finetune: {stepz: 3}\n", "unknown key 'finetune.stepz'"),
        (BASE + "colour: red\n", "unknown key 'colour'"),
        ("name: t\nfamilies: [medicl-icd10]\n", "unknown family 'medicl-icd10'; did you mean 'medical-icd10'?"),
        (BASE + "seed_mixture: {medical-icd10: -1}\n", "weight of 'medical-icd10' must be a finite number >= 0"),
        (BASE + "seed_mixture: {medical-icd10: 0}\n", "weights are all zero"),
        (BASE + "seed_mixture: {legal-licences: 1}\n", "family 'legal-licences' is not in the recipe's families"),
        (BASE + "objective: {weights: {nope: 1}}\n", "no probe named 'nope'"),
        (BASE + "objective: {weights: {medical-icd10: 0}}\n", "weights are all zero"),
        (BASE + "probes: {sizes: {medical-icd1O: {probe_size: 9}}}\n",
         "probes.sizes: no probe named 'medical-icd1O' (probes are family names); did you mean 'medical-icd10'?"),
        (BASE + "probes: {sizes: {medical-icd10: {probe_size: 0}}}\n", "probes.sizes.medical-icd10.probe_size"),
        (BASE + "search: {budget: 0}\n", "search.budget: Input should be greater than 0"),
        ("name: t\nfamilies: [a, a]\n", "family 'a' is listed twice"),
        ("name: t\nfamilies: [medical-icd10\n", "malformed YAML"),
        ("- just\n- a list\n", "a recipe must be a YAML mapping"),
        (BASE.replace("]", ", {name: mine}]"), "family 'mine' needs exactly one of 'path' or 'hub'"),
    ],
)
def test_validate_reports_one_clear_line(tmp_path, text, message):
    path = write(tmp_path, text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0], result.output


def test_validate_accepts_a_good_recipe(tmp_path):
    path = write(tmp_path, BASE + "seed_mixture: {medical-icd10: 2, medical-icd10-chapters: 1}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "2 families" in result.output


def test_unknown_recipe_name_lists_known_ones():
    with pytest.raises(SoupkitError, match="unknown recipe 'nope'; known: .*default"):
        load_recipe("nope")


def test_mixture_yaml_round_trip(tmp_path):
    mixture = Mixture(name="m", weights={"a": 3.0, "b": 1.0})
    path = tmp_path / "m.yaml"
    path.write_text(mixture.to_yaml())
    assert load_mixture(path) == mixture
    assert mixture.normalised() == {"a": 0.75, "b": 0.25}


def test_search_rejects_non_positive_budget():
    result = CliRunner().invoke(main, ["search", "--budget", "0"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --budget: Input should be greater than 0, got 0"


def test_objective_may_target_a_scored_view_only(tmp_path):
    ok = write(tmp_path, BASE + "probes: {dims: [8], quantizations: [int8]}\n"
                            "objective: {weights: {medical-icd10@8: 1, medical-icd10@int8: 2}}\n")
    assert CliRunner().invoke(main, ["validate", str(ok)]).exit_code == 0
    bad = write(tmp_path, BASE + "objective: {weights: {medical-icd10@64: 1}}\n")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "'medical-icd10@64' is not scored; add 64 to probes.dims" in result.output
