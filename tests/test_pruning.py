"""Multi-fidelity search: milestone probes mid-finetune, a pruner that stops trials there, and a
budget that counts the trials it stopped (issue 17)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from soupkit.cli import main
from soupkit.config import Recipe
from soupkit.search.checkpoints import OWNER_FILE
from soupkit.search.samplers import make_pruner
from soupkit.search.space import PARAM_PREFIX, params_for_mixture
from soupkit.search.study import trial_counts
from soupkit.search.workers import over_budget
from soupkit.study_record import record_milestone, record_pruned, record_skipped

FAMILIES = ["medical-icd10", "medical-icd10-chapters"]
BASE = "name: t\nfamilies: [medical-icd10, medical-icd10-chapters]\n"


def with_search(recipe: Recipe, **search) -> Recipe:
    return recipe.model_copy(update={"search": recipe.search.model_copy(update=search)})


# --- milestones and the budget, on the tiny model -------------------------------------------------


@pytest.mark.slow
def test_milestones_are_reported_and_change_nothing_the_trial_trains(load_study, search, tiny_recipe, tiny_model,
                                                                    tmp_path):
    recipe = tiny_recipe(tiny_model)  # 3 steps a trial
    search(with_search(recipe, milestones=[1, 2]), tmp_path / "staged", budget=1)
    search(recipe, tmp_path / "plain", budget=1)
    staged, plain = load_study(tmp_path / "staged").trials[0], load_study(tmp_path / "plain").trials[0]

    assert staged.state.name == "COMPLETE"
    assert sorted(staged.intermediate_values) == [1, 2]
    assert staged.user_attrs["milestones"] == {str(step): v for step, v in staged.intermediate_values.items()}
    assert set(staged.user_attrs["seconds"]) == {"finetune", "probe", "milestones"}
    assert set(plain.user_attrs["seconds"]) == {"finetune", "probe"}
    # the same mixture trains the same weights with or without milestone probes (back in train mode after them)
    assert staged.user_attrs["mixture"] == plain.user_attrs["mixture"]
    a = load_file(Path(staged.user_attrs["checkpoint"]) / "model.safetensors")
    b = load_file(Path(plain.user_attrs["checkpoint"]) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_milestone_fraction_scores_fewer_items_and_leaves_the_final_score_alone(load_study, search, tiny_recipe,
                                                                                  tiny_model, tmp_path):
    recipe = tiny_recipe(tiny_model)
    search(with_search(recipe, milestones=[2]), tmp_path / "whole", budget=1)
    search(with_search(recipe, milestones=[2], milestone_fraction=0.3), tmp_path / "part", budget=1)
    whole, part = load_study(tmp_path / "whole").trials[0], load_study(tmp_path / "part").trials[0]

    assert whole.user_attrs["scores"] == part.user_attrs["scores"] and whole.value == part.value
    assert whole.intermediate_values[2] != part.intermediate_values[2]  # other items, another score
    assert part.user_attrs["milestone_fraction"] == 0.3 and "milestone_fraction" not in whole.user_attrs


@pytest.mark.slow
def test_a_pareto_study_records_the_milestone_curve_without_reporting(search, tiny_recipe, tiny_model, tmp_path):
    recipe = Recipe.model_validate({**tiny_recipe(tiny_model).model_dump(), "search": {"budget": 1, "milestones": [2]},
                                    "objective": {"mode": "pareto", "domain": ["medical-icd10"]}})
    out = tmp_path / "run"
    search(recipe, out)
    trial = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}").trials[0]
    assert trial.state.name == "COMPLETE" and len(trial.values) == 2
    assert trial.intermediate_values == {}  # Optuna takes reports from one-objective studies only
    assert list(trial.user_attrs["milestones"]) == ["2"]


def crafted_study(storage: str, n: int = 5, value: float = 2.0):
    """A study of `n` completed trials that scored `value` at steps 1 and 2: with the median pruner
    (5 startup trials), every real trial of the tiny model (objective below 1) is stopped at step 1."""
    study = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    distributions = {PARAM_PREFIX + f: optuna.distributions.FloatDistribution(1e-6, 1.0) for f in FAMILIES}
    for i in range(n):
        params = params_for_mixture({FAMILIES[0]: i + 1, FAMILIES[1]: 1}, FAMILIES)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value,
                                                  intermediate_values={1: value, 2: value}))
    return study


@pytest.mark.slow
def test_trials_the_pruner_stops_leave_no_checkpoint_and_fill_the_budget(search, tiny_recipe, tiny_model, tmp_path):
    from soupkit.search.run import run_search

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    crafted_study(storage)
    out, lines = tmp_path / "run", []
    # milestones derived from 3 steps: 1 and 2
    recipe = with_search(tiny_recipe(tiny_model), pruner="median", budget=7)
    result = run_search(recipe, out, storage, log=lines.append, show_progress=False)

    assert (result.completed, result.pruned) == (5, 2)
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5 + ["PRUNED"] * 2
    for trial in trials[5:]:
        value = trial.user_attrs["milestones"]["1"]
        assert trial.user_attrs["pruned_at"] == 1 and list(trial.user_attrs["milestones"]) == ["1"]
        assert trial.intermediate_values == {1: value} and trial.value == value < 1
        assert "checkpoint" not in trial.user_attrs and "skipped" not in trial.user_attrs
        assert set(trial.user_attrs["seconds"]) == {"finetune", "milestones"}
    # not even a partial checkpoint folder: the trials folder holds only its owner file
    assert [p.name for p in (out / "trials").iterdir()] == [OWNER_FILE]
    pruned_lines = [line for line in lines if " pruned at step " in line]
    assert len(pruned_lines) == 2
    assert re.fullmatch(r"trial 6/7 \(#5\) pruned at step 1: objective 0\.\d{4}  \(best 2\.0000, base 0\.\d{4}\)",
                        pruned_lines[0]), pruned_lines[0]
    assert pruned_lines[1].startswith("trial 7/7 (#6) pruned at step 1: objective ")
    # the budget is full: the same command runs nothing more
    assert search(recipe, out, storage=storage).pruned == 2
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 7


def add_stopped_and_skipped(study, stopped, objective: float) -> None:
    """`stopped` ends as the pruner leaves a trial (at step 8 with `objective`); then one trial
    that gave way to a duplicate mixture: both PRUNED, only the first did work."""
    record_milestone(stopped, 8, objective)
    record_pruned(stopped, 8, {"finetune": 0.7, "milestones": 0.5})
    study.tell(stopped, state=optuna.trial.TrialState.PRUNED)
    skipped = study.ask()
    record_skipped(skipped, "same mixture as trial 0")
    study.tell(skipped, state=optuna.trial.TrialState.PRUNED)


# --- the counting, without training ---------------------------------------------------------------


def test_the_budget_counts_trials_the_pruner_stopped_and_not_those_that_gave_way():
    study = optuna.create_study(direction="maximize")
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    add_stopped_and_skipped(study, study.ask(), 0.4)
    running = study.ask()

    counts = trial_counts(study)
    assert {k: counts[k] for k in ("COMPLETE", "PRUNED", "STOPPED", "DONE", "RUNNING")} == {
        "COMPLETE": 2, "PRUNED": 2, "STOPPED": 1, "DONE": 3, "RUNNING": 1}
    # the running trial itself: 3 trials counted before it
    assert not over_budget(study, running.number, 4) and over_budget(study, running.number, 3)
    # a trial started after it finds it ahead
    assert over_budget(study, running.number + 1, 4) and not over_budget(study, running.number + 1, 5)


@pytest.mark.parametrize(("name", "kind"), [("none", "NopPruner"), ("median", "MedianPruner"),
                                            ("successive-halving", "SuccessiveHalvingPruner"),
                                            ("hyperband", "HyperbandPruner")])
def test_every_pruner_name_makes_its_optuna_pruner(name, kind):
    assert type(make_pruner(name, [8, 16], 24)).__name__ == kind


# --- the recipe and the command line ---------------------------------------------------------------


def recipe_with(**search) -> Recipe:
    return Recipe.model_validate({"name": "t", "families": FAMILIES, "finetune": {"steps": 24}, "search": search})


def test_milestones_are_derived_in_one_place():
    assert recipe_with().milestone_steps() == []
    assert recipe_with(milestones=[4]).milestone_steps() == [4]  # without a pruner they record the curve
    assert recipe_with(pruner="median").milestone_steps() == [8, 16]
    assert recipe_with(pruner="median", milestones=[5, 20]).milestone_steps() == [5, 20]
    short = {"name": "t", "families": FAMILIES, "search": {"pruner": "hyperband"}}
    assert [Recipe.model_validate({**short, "finetune": {"steps": s}}).milestone_steps() for s in (2, 3, 4)] == [
        [1], [1, 2], [1, 2]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("finetune: {steps: 24}\nsearch: {milestones: [8, 24]}\n",
         "search.milestones: step 24 is not below finetune.steps (24)"),
        ("search: {milestones: [16, 8]}\n", "search.milestones: steps must be strictly increasing"),
        ("search: {milestones: [8, 8]}\n", "search.milestones: steps must be strictly increasing"),
        ("search: {milestones: [0, 8]}\n", "search.milestones.0: Input should be greater than or equal to 1"),
        ("objective: {mode: pareto, domain: [medical-icd10]}\nsearch: {pruner: median}\n",
         "search.pruner: 'median' needs objective.mode weighted; Optuna's pruners compare trials on one objective"),
        ("finetune: {steps: 1}\nsearch: {pruner: hyperband}\n",
         "search.pruner: 'hyperband' has no step to stop a trial at: finetune.steps (1) leaves no milestone below it"),
        ("search: {pruner: halving}\n",
         "search.pruner: Input should be 'none', 'median', 'successive-halving' or 'hyperband'"),
        ("search: {milestone_fraction: 0.25}\n",
         "search.milestone_fraction: 0.25 applies to milestones and the recipe has none"),
        ("search: {milestones: [8], milestone_fraction: 1.5}\n",
         "search.milestone_fraction: Input should be less than or equal to 1"),
    ],
)
def test_bad_milestones_and_pruners_are_one_clear_line(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(BASE + text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {message}"), result.output


def test_validate_shows_the_pruner_and_its_milestones(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(BASE + "finetune: {steps: 24}\nsearch: {pruner: successive-halving}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "sampler gp, pruner successive-halving, milestones 8,16, seed mixture none" in result.output
    path.write_text(BASE + "finetune: {steps: 24}\nsearch: {milestones: [8], milestone_fraction: 0.25}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert "sampler gp, milestones 8 on 0.25 of the probe items, seed mixture none" in result.output, result.output


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (["--milestones", "8,x"], ("Invalid value for '--milestones': '8,x' is not a comma-separated list",)),
        (["--milestones", ""], ("Invalid value for '--milestones': '' is not",)),
        (["--milestones", "30"], ("--milestones: search.milestones: step 30 is not below finetune.steps (24)",)),
        (["--milestones", "16,8"], ("--milestones: steps must be strictly increasing, got [16, 8]",)),
        (["--steps", "8", "--milestones", "8"], ("--milestones: search.milestones: step 8 is not below",)),
        (["--pruner", "median", "--steps", "1"], ("--pruner: search.pruner: 'median' has no step to stop a trial at",)),
        (["--pruner", "halving"], ("Invalid value for '--pruner': 'halving' is not one of",)),
        (["--milestone-fraction", "0.5"], ("--milestone-fraction: search.milestone_fraction: 0.5 applies to "
                                          "milestones and the recipe has none",)),
        (["--milestones", "8", "--milestone-fraction", "0"], ("--milestone-fraction: Input should be greater than 0",)),
    ],
)
def test_bad_pruning_options_are_one_line_and_write_nothing(one_line_error, tmp_path, options, needles):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(BASE + "finetune: {steps: 24}\n")
    one_line_error(["search", "--recipe", str(recipe), "--out", str(tmp_path / "run"), *options], *needles,
                   workdir=tmp_path)


def test_a_pruner_on_a_pareto_recipe_is_refused_on_the_command_line(one_line_error, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(BASE + "objective: {mode: pareto, domain: [medical-icd10]}\n")
    one_line_error(["worker", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--pruner", "median"],
                   "--pruner: search.pruner: 'median' needs objective.mode weighted", workdir=tmp_path)


# --- the report -------------------------------------------------------------------------------------


def test_the_report_shows_pruned_trials_apart_from_skipped_ones(tmp_path):
    from optuna_dashboard import get_note

    from soupkit.report import write_report

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    study.set_user_attr("base_scores", {"a": 0.5})
    study.set_user_attr("base_objective", 0.5)
    for number in range(2):
        trial = study.ask()
        trial.set_user_attr("mixture", {"fam-a": 0.3 + number / 10, "fam-b": 0.7 - number / 10})
        trial.set_user_attr("scores", {"a": 0.75})
        trial.set_user_attr("objective", 0.75)
        trial.set_user_attr("seconds", {"finetune": 2.0, "probe": 0.5, "milestones": 0.5})
        trial.report(0.7, 8)
        study.tell(trial, 0.75)
    stopped = study.ask()
    stopped.set_user_attr("mixture", {"fam-a": 0.9, "fam-b": 0.1})
    stopped.report(0.7412, 8)
    add_stopped_and_skipped(study, stopped, 0.7412)

    report = write_report(study, tmp_path / "r.html", tmp_path, storage=storage)
    counts = "2 complete, 0 failed, 1 pruned, 1 skipped trials"
    assert report.summary.splitlines()[0] == f"study '{study.study_name}': {counts}"
    assert "best trial #0: objective 0.7500" in report.summary  # a milestone's objective is not a result
    html = (tmp_path / "r.html").read_text()
    assert "pruned (1)" in html and "skipped (1)" in html
    assert "pruned at step 8: objective 0.7412" in html  # the trials table
    note = get_note(optuna.trial.Trial(study, study.trials[2]._trial_id))
    assert "\n**PRUNED**: pruned at step 8: objective 0.7412\n" in note
