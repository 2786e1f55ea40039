"""How much of a domain recipe's held-out test halves a bank recipe trained on, text by text.

    python bench/held_out_overlap.py --bank-recipe default --recipe medical

`soupkit adapt` warns when a bank run trained on a family from the same source as a held-out
probe (soupkit.soups.bank.held_out_overlaps); this counts the texts: for each held-out probe's test
half, how many of its queries, documents or labelled texts occur in the bank recipe's training
examples (after that recipe's own leak filtering). Builds families only; loads no model.
"""

from __future__ import annotations

import argparse

from soupkit.config import load_recipe
from soupkit.data.load import load_held_out_test_halves, load_recipe_families

FIELDS = ("queries", "corpus", "train_texts", "test_texts", "texts", "left", "right")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank-recipe", default="default")
    parser.add_argument("--recipe", default="medical")
    args = parser.parse_args()
    families, _ = load_recipe_families(load_recipe(args.bank_recipe))
    trained = {text for family in families.values() for e in family.train
               for text in (e.anchor, e.positive, e.negative) if text}
    print(f"recipe {args.recipe}: held-out test halves against the training texts of recipe {args.bank_recipe}")
    for name, family in load_held_out_test_halves(load_recipe(args.recipe)).items():
        parts = []
        for field in FIELDS:
            texts = getattr(family.probe, field, None)
            if texts:
                parts.append(f"{field} {len(set(texts) & trained)} of {len(set(texts))}")
        print(f"  {name}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
