"""Loading a recipe's families: no probe text of any family is ever trained on."""

from __future__ import annotations

from soupkit.config import Recipe
from soupkit.data.load import load_recipe_families, probe_texts


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
