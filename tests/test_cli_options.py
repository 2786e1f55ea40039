"""Options built from the recipe models (soupkit/cli_options.py): their types come from the fields,
and what a command is given goes back to the field it names."""

from __future__ import annotations

from click.testing import CliRunner

from soupkit.cli import ingredients, main, search
from soupkit.cli_options import FieldOption, field_type
from soupkit.config import IngredientSpec, Recipe


def test_an_option_takes_its_type_and_choices_from_the_field():
    assert field_type(Recipe, "search.budget") is int
    assert field_type(Recipe, "search.keep_checkpoints") is int  # `int | None`: None means not given
    assert field_type(Recipe, "search.milestone_fraction") is float
    assert field_type(IngredientSpec, "select").choices == ("diverse", "top")
    assert field_type(Recipe, "finetune.gradient_checkpointing") is None  # a bool is a click flag


def test_every_field_option_names_a_field_of_its_model():
    for command, model in ((search, Recipe), (ingredients, IngredientSpec)):
        for option in (p for p in command.params if isinstance(p, FieldOption)):
            node = model
            for part in option.field.split("."):
                assert part in node.model_fields, f"{command.name} {option.opts[0]}: no field {option.field}"
                node = node.model_fields[part].annotation


def test_a_value_out_of_the_fields_bounds_is_one_line_naming_the_option(tmp_path):
    done = CliRunner().invoke(main, ["search", "--budget", "0", "--out", str(tmp_path / "run")])
    assert done.exit_code == 2
    assert done.output.strip() == "error: --budget: Input should be greater than 0, got 0"
    assert not (tmp_path / "run").exists()
