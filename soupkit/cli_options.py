"""Command-line options that several commands share, each defined once with its help. An option
that sets a recipe field is built from the pydantic field (as mergekit's from `MergeOptions`) and
its value goes back through the same model (soupkit.config.with_overrides): bounds cannot disagree.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

import click
from pydantic import BaseModel

DEFAULT_RECIPE = "default"

storage_option = click.option("--storage", default=None, help="Optuna storage URL (default sqlite:///<out>/study.db).")
study_option = click.option("--study", "study_name", default=None, help="Study name (when the storage holds several).")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")
trust_remote_code_option = click.option("--trust-remote-code", is_flag=True,
                                        help="Let the base model run its own Python code (off: safer).")


def command_line() -> str:
    """This command as recorded beside what it writes, passwords masked."""
    from soupkit.search.study import redacted_command

    return redacted_command(["soupkit", *sys.argv[1:]])


def run_option(help: str | None = "Run folder of a search."):
    """`--out`: the run folder of a search, runs/default unless given."""
    return click.option("--out", type=click.Path(path_type=Path), default=Path("runs") / DEFAULT_RECIPE,
                        show_default=True, help=help)


class FieldOption(click.Option):
    """A click option that sets one field of a pydantic model (`field`, dotted from the model)."""

    def __init__(self, *args, field: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.field = field


def field_type(model: type[BaseModel], field: str):
    """The click type of a (dotted) model field: int, float, a Choice of a Literal's values."""
    for part in field.split("."):
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else model
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation, args = args[0], list(typing.get_args(args[0]))
    if typing.get_origin(annotation) is typing.Literal:
        return click.Choice([str(a) for a in args])
    return annotation if annotation in (int, float, str) else None  # a bool is a click flag


def field_option(model: type[BaseModel], field: str, *decls: str, help: str, type=None):
    """An option for `model`'s `field` (None when not given: the recipe's value stays)."""
    return click.option(*decls, cls=FieldOption, field=field, default=None, help=help,
                        type=type or field_type(model, field))


def field_values(ctx: click.Context, fields: set[str] | None = None) -> dict[str, tuple[str, object]]:
    """{field: (option, value)} of the command's field options (those in `fields`, when given)."""
    return {p.field: (p.opts[0], ctx.params[p.name]) for p in ctx.command.params
            if isinstance(p, FieldOption) and (fields is None or p.field in fields)}
