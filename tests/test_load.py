"""Loading a recipe's families: no probe text of any family is ever trained on."""

from __future__ import annotations

import pytest

from soupkit.config import Recipe
from soupkit.data.load import build_options, load_families, load_recipe_families, probe_texts


def test_no_training_example_contains_any_probe_text():
    recipe = Recipe.model_validate({
        "name": "leaks",
        "families": ["medical-icd10", "medical-icd10-chapters"],
        "probes": {"probe_size": 50, "probe_corpus": 100, "max_train": 3000},
    })
    logged: list[str] = []
    families, probes = load_recipe_families(recipe, log=logged.append)
    held_out = set().union(*(probe_texts(f) for f in probes.values()))
    # ICD titles are retrieval targets in one family and classification texts in the other:
    # some of one family's training texts are the other's probe texts, and are dropped
    assert any(line.startswith("held out other probes' texts from training: ") for line in logged)
    for family in families.values():
        assert family.train
        for e in family.train:
            assert e.anchor not in held_out and e.positive not in held_out and e.negative not in held_out


def test_probe_sizes_per_family_and_probe_only_families_use_all_their_source():
    recipe = Recipe.model_validate({
        "name": "sizes",
        "families": ["medical-abbreviations", "medical-icd10"],
        "probe_only": ["legal-wordnet"],
        "probes": {"probe_size": 30, "probe_corpus": 60,
                   "sizes": {"medical-abbreviations": {"probe_size": 50}, "legal-wordnet": {"probe_size": 5000}}},
    })
    assert (build_options(recipe, "medical-icd10").probe_size, build_options(recipe, "medical-icd10").probe_corpus) == (30, 60)
    own = build_options(recipe, "medical-abbreviations")
    assert (own.probe_size, own.probe_corpus, own.probe_share) == (50, 100, 1 / 3)  # corpus follows: 2 x size
    trained = load_families(recipe)
    assert trained["medical-abbreviations"].probe.sizes() == "50 queries / 100 docs"
    assert trained["medical-icd10"].probe.sizes() == "30 queries / 60 docs"
    # legal-wordnet trains nothing, so its probe takes every definition (569 distinct ones), not a
    # third; the search scores its selection half
    (held_out,) = load_families(recipe, probe_only=True).values()
    assert held_out.probe.sizes() == "285 queries / 285 docs"


def test_neighbourhood_distractors_recipe_wide_or_per_probe():
    recipe = Recipe.model_validate({
        "name": "distractors", "families": ["paraphrase", "code-search"],
        "probes": {"distractors": "neighbours", "sizes": {"code-search": {"distractors": "random"}}},
    })
    assert build_options(recipe, "paraphrase").probe_distractors == "neighbours"
    assert build_options(recipe, "code-search").probe_distractors == "random"
    assert build_options(Recipe.model_validate({"name": "plain", "families": ["paraphrase"]}),
                         "paraphrase").probe_distractors == "random"
    with pytest.raises(ValueError, match="distractors"):
        Recipe.model_validate({"name": "bad", "families": ["paraphrase"], "probes": {"distractors": "nearest"}})
