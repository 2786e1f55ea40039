"""Each list of names is written once: the recipe schema's names (soupkit.config) are exactly the
keys of the registries that implement them, and the CLI offers what the registries hold."""

from __future__ import annotations

from typing import get_args

from click.testing import CliRunner

from soupkit.cli import main
from soupkit.config import PrunerName, Quantization, SamplerName, TaskType
from soupkit.data.load import _registry
from soupkit.merge.methods import METHODS
from soupkit.probes.views import QUANTIZATIONS
from soupkit.prompts import PROMPT_NAMES
from soupkit.search.samplers import PRUNERS, SAMPLERS


def test_every_task_type_has_prompt_names_and_no_other():
    assert set(PROMPT_NAMES) == set(get_args(TaskType))


def test_every_builtin_family_has_a_known_task_type():
    registry = _registry()
    assert {name: registry.get(name).task for name in registry if registry.get(name).task not in get_args(TaskType)} == {}


def test_recipe_sampler_names_are_the_registered_samplers():
    assert sorted(get_args(SamplerName)) == SAMPLERS.names()


def test_recipe_pruner_names_are_the_registered_pruners():
    assert sorted(get_args(PrunerName)) == PRUNERS.names()


def test_recipe_quantizations_are_the_registered_views():
    assert sorted(get_args(Quantization)) == QUANTIZATIONS.names()


def test_cli_choices_and_help_come_from_the_registries():
    search_help = CliRunner().invoke(main, ["search", "--help"]).output
    assert "[" + "|".join(SAMPLERS.names()) + "]" in search_help
    assert "[" + "|".join(PRUNERS.names()) + "]" in search_help
    merge_help = " ".join(CliRunner().invoke(main, ["merge", "--help"]).output.split())
    soup_help = " ".join(CliRunner().invoke(main, ["soup", "--help"]).output.split())
    for name in METHODS.names():
        assert name in merge_help and name in soup_help
