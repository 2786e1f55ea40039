"""What the trunk-cache benchmarks share: the recipe as their flags make it, its base found on disk,
and a fresh $SOUPKIT_HOME so the trunk cache starts cold (imported by train_top.py, profile_step.py)."""

from __future__ import annotations

import os
import tempfile


def recipe_with_cold_cache(args, prefix: str):
    """The recipe of `args` (--recipe, --base, --steps, --batch-size), its base resolved to a folder
    before the fresh $SOUPKIT_HOME hides the models `soupkit fetch-model` put under the old one."""
    from soupkit.base_model import resolve_base
    from soupkit.config import load_recipe, with_overrides
    from soupkit.models.fetch import same_model

    recipe = load_recipe(args.recipe)
    recipe = with_overrides(recipe, {"base": ("--base", args.base)}).for_base(same_model)
    recipe = with_overrides(recipe, {"finetune.steps": ("--steps", args.steps),
                                     "finetune.batch_size": ("--batch-size", args.batch_size)})
    recipe = recipe.model_copy(update={"base": resolve_base(recipe.base)})
    os.environ["SOUPKIT_HOME"] = tempfile.mkdtemp(prefix=prefix)
    return recipe
