"""The `soupkit` command line: a thin click layer over library functions.

Heavy libraries are imported inside each command, so `soupkit --help` and `soupkit validate`
answer instantly.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from soupkit.errors import SoupkitError

DEFAULT_RECIPE = "default"


class SoupkitGroup(click.Group):
    """Turns SoupkitError into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SoupkitError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=SoupkitGroup)
@click.version_option(package_name="soupkit")
def main() -> None:
    """Adapt a small embedding model to a domain: mixture search, short finetunes, probes, soups."""


def _load(recipe_arg: str):
    from soupkit.config import RECIPES_DIR, load_recipe, resolve_named

    path = resolve_named(recipe_arg, RECIPES_DIR, "recipe")
    return load_recipe(path), path


@main.command()
@click.option("--budget", type=int, default=None, help="Completed trials to reach (default: the recipe's).")
@click.option("--recipe", "recipe_arg", default=DEFAULT_RECIPE, show_default=True, help="Recipe name or YAML path.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default runs/<recipe name>).")
@click.option("--storage", default=None, help="Optuna storage URL (default sqlite:///<out>/study.db).")
@click.option("--base", default=None, help="Base model: folder or hub id (default: the recipe's; bundled MiniLM).")
@click.option("--sampler", type=click.Choice(["gp", "tpe", "random"]), default=None, help="Search sampler.")
@click.option("--steps", type=int, default=None, help="Finetune steps per trial (default: the recipe's).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def search(budget, recipe_arg, out, storage, base, sampler, steps, quiet) -> None:
    """Search data mixtures: propose, finetune, probe, record in an Optuna study.

    Re-running the same command resumes the study and finishes the budget.

    \b
    Example:
      soupkit search --budget 40
      soupkit search --recipe recipes/medical.yaml --base bundled --budget 20 --out runs/medical
    """
    from soupkit.search.run import run_search

    recipe, path = _load(recipe_arg)
    if budget is not None and budget <= 0:
        raise SoupkitError(f"--budget must be a positive number of trials, got {budget}")
    if steps is not None and steps <= 0:
        raise SoupkitError(f"--steps must be positive, got {steps}")
    recipe = recipe.model_copy(
        update={
            **({"base": base} if base else {}),
            "search": recipe.search.model_copy(
                update={k: v for k, v in {"budget": budget, "sampler": sampler}.items() if v is not None}
            ),
            "finetune": recipe.finetune.model_copy(update={"steps": steps} if steps else {}),
        }
    )
    out = out or Path("runs") / recipe.name
    command = "soupkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = run_search(recipe, out, storage, path, command, log=click.echo, show_progress=not quiet)

    from soupkit.report.tables import top_trials_table
    from soupkit.search.study import open_study

    study = open_study(result.storage, result.study_name, None, ["maximize"])
    click.echo(top_trials_table(study))
    if result.best_value is not None:
        gain = result.best_value - result.base_value
        click.echo(f"best objective {result.best_value:.4f} vs base {result.base_value:.4f} ({gain:+.4f}); "
                   f"study {result.storage}")


@main.command()
@click.argument("recipe_arg", metavar="RECIPE")
def validate(recipe_arg: str) -> None:
    """Check a recipe without loading data or models.

    \b
    Example:
      soupkit validate recipes/medical.yaml
    """
    from soupkit.config import seed_mixture_of
    from soupkit.data.load import check_recipe

    recipe, path = _load(recipe_arg)
    names = check_recipe(recipe, path)
    seed = seed_mixture_of(recipe, path)
    click.echo(f"{path}: ok — recipe '{recipe.name}', {len(names)} families, budget {recipe.search.budget}, "
               f"sampler {recipe.search.sampler}, seed mixture {'yes' if seed else 'none'}")


@main.command()
@click.option("--build/--no-build", default=True, help="Build each family to show sizes (a few seconds each).")
def families(build: bool) -> None:
    """List built-in task families: task, source, sizes, probe metric, and what is missing.

    \b
    Example:
      soupkit families
    """
    from soupkit.data.load import _registry
    from soupkit.data.registry import BuildOptions
    from soupkit.errors import MissingSourceError

    registry = _registry()
    for name in registry:
        info = registry.get(name)
        line = f"{name:28s} {info.task:15s}"
        if build:
            try:
                fam = info.build(BuildOptions())
                line += f" train {len(fam.train):6d}  probe {fam.metric}: {fam.probe.sizes() if fam.probe else '-'}"
            except MissingSourceError as exc:
                line += f" MISSING: {exc.install}"
        click.echo(line)
        click.echo(f"{'':28s} source: {info.source}")


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs") / DEFAULT_RECIPE, show_default=True)
@click.option("--storage", default=None, help="Optuna storage URL (default sqlite:///<out>/study.db).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8080, show_default=True)
def dashboard(out: Path, storage: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard for a run's study (on 127.0.0.1 unless --host is given).

    \b
    Example:
      soupkit dashboard --out runs/default
    """
    from soupkit.search.study import default_storage, open_storage

    if storage is None and not (out / "study.db").is_file():
        raise SoupkitError(f"no study found: {out / 'study.db'} does not exist")
    from optuna_dashboard import run_server

    click.echo(f"optuna-dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    run_server(open_storage(storage or default_storage(out)), host=host, port=port)


if __name__ == "__main__":
    main()
