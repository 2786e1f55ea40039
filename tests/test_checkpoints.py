"""Disk budget: only the best K trial checkpoints stay, never one a recorded soup uses; leftovers of
crashed writes are cleaned, never another worker's write in progress."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from soupkit.cli import main
from soupkit.config import Recipe
from soupkit.soups.study_soup import ranked_ingredients
from soupkit.search.checkpoints import (
    OWNER_FILE,
    check_checkpoint_folder,
    claim_checkpoint_folder,
    keep_best_checkpoints,
    remove_partial_checkpoints,
)
from soupkit.errors import SoupkitError


def fake_study(tmp_path: Path, objectives: list, directions=("maximize",)):
    """A study whose completed trials have checkpoint folders and the given objective values."""
    study = optuna.create_study(directions=list(directions))
    for number, value in enumerate(objectives):
        folder = tmp_path / "trials" / f"trial-{number:04d}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"weights")
        values = value if isinstance(value, list) else [value]
        study.add_trial(optuna.trial.create_trial(
            values=values, user_attrs={"checkpoint": str(folder), "objective": sum(values) / len(values)}
        ))
    claim_checkpoint_folder(tmp_path / "trials", study, "memory")
    return study


def kept(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "trials").iterdir() if p.name != OWNER_FILE)


def test_only_the_best_k_checkpoints_stay(tmp_path):
    study = fake_study(tmp_path, [0.1, 0.5, 0.3, 0.9])
    assert keep_best_checkpoints(study, 2, tmp_path / "trials", log=lambda s: None) == [2, 0]
    assert kept(tmp_path) == ["trial-0001", "trial-0003"]  # no half-removed folder, no leftover
    assert keep_best_checkpoints(study, 2, tmp_path / "trials", log=lambda s: None) == []


def test_a_checkpoint_a_recorded_soup_uses_is_never_removed(tmp_path):
    study = fake_study(tmp_path, [0.1, 0.5, 0.3, 0.9])
    study.set_user_attr("soups", {"uniform-top2": {"members": [0, 2], "method": "uniform"}})
    assert keep_best_checkpoints(study, 1, tmp_path / "trials", log=lambda s: None) == [1]
    assert kept(tmp_path) == ["trial-0000", "trial-0002", "trial-0003"]


def test_the_pareto_front_is_kept(tmp_path):
    # trial 0 is on the front (best domain value) but has the lowest mean
    study = fake_study(tmp_path, [[0.9, 0.0], [0.5, 0.5], [0.4, 0.4]], directions=("maximize", "maximize"))
    keep_best_checkpoints(study, 1, tmp_path / "trials", log=lambda s: None)
    assert kept(tmp_path) == ["trial-0000", "trial-0001"]


def test_partial_checkpoints_of_running_trials_are_left_alone(tmp_path):
    study = fake_study(tmp_path, [0.5])
    running = study.ask()  # trial 1: another worker writing its checkpoint right now
    trials = tmp_path / "trials"
    for name in (f".tmp-trial-{running.number:04d}-abc", ".tmp-trial-0000-removed-12", ".tmp-trial-0007-xyz"):
        (trials / name).mkdir()
    assert remove_partial_checkpoints(study, trials) == [".tmp-trial-0000-removed-12", ".tmp-trial-0007-xyz"]
    assert kept(tmp_path) == [".tmp-trial-0001-abc", "trial-0000"]


@pytest.mark.slow
def test_search_keeps_the_best_k_and_soups_still_work(load_study, search, tiny_recipe, tiny_model, tmp_path):
    recipe = tiny_recipe(tiny_model)
    recipe = Recipe.model_validate({**recipe.model_dump(), "search": {**recipe.search.model_dump(),
                                                                       "keep_checkpoints": 2}})
    out = tmp_path / "run"
    assert search(recipe, out, budget=4).completed == 4
    study = load_study(out)
    best = sorted(study.trials, key=lambda t: (-t.user_attrs["objective"], t.number))[:2]
    assert kept(out) == sorted(f"trial-{t.number:04d}" for t in best)
    assert [i.trial for i in ranked_ingredients(study)] == [t.number for t in best]


def test_keep_checkpoints_must_be_positive(tmp_path):
    done = CliRunner().invoke(main, ["search", "--keep-checkpoints", "0", "--out", str(tmp_path / "run")])
    assert done.exit_code == 2
    assert done.output.strip() == "error: --keep-checkpoints: Input should be greater than 0, got 0"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [0, -1])
def test_recipe_keep_checkpoints_must_be_positive(tmp_path, value):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: t\nfamilies: [medical-icd10]\nsearch: {{keep_checkpoints: {value}}}\n")
    done = CliRunner().invoke(main, ["validate", str(path)])
    assert done.exit_code == 2 and "search.keep_checkpoints: Input should be greater than 0" in done.output


@pytest.mark.slow
def test_checkpoints_can_go_to_a_folder_of_their_own(load_study, search, tiny_recipe, tiny_model, tmp_path):
    out, shared = tmp_path / "run", tmp_path / "shared-checkpoints"
    search(tiny_recipe(tiny_model), out, budget=2, checkpoints=shared)
    study = load_study(out)
    assert [Path(t.user_attrs["checkpoint"]) for t in study.trials] == [
        (shared / f"trial-{t.number:04d}").resolve() for t in study.trials
    ]
    assert not (out / "trials").exists()
    assert [i.trial for i in ranked_ingredients(study)]  # soups find them there


def copy_run(tmp_path: Path) -> Path:
    """`cp -a orig copy` of a run whose study (in memory here) records the original's paths."""
    import shutil

    return Path(shutil.copytree(tmp_path, tmp_path.parent / "copy", symlinks=True))


@pytest.mark.parametrize("claimed", [True, False], ids=["owner-file", "made-before-owner-files"])
def test_a_copied_run_removes_only_its_own_checkpoints(tmp_path, claimed):
    """Issue 31 #1: the copy's study records the original's absolute paths; the copy removes the
    folders of the same names in its own checkpoints folder, and the original keeps every one."""
    orig = tmp_path / "orig"
    study = fake_study(orig, [0.1, 0.5, 0.3, 0.9])
    if not claimed:
        (orig / "trials" / OWNER_FILE).unlink()  # a run from before owner files
    copy = copy_run(orig)
    check_checkpoint_folder(copy / "trials", study, str(copy / "study.db"), inside_run=True)
    claim_checkpoint_folder(copy / "trials", study, str(copy / "study.db"))
    assert keep_best_checkpoints(study, 1, copy / "trials", log=lambda s: None) == [1, 2, 0]
    assert kept(copy) == ["trial-0003"]
    assert kept(orig) == ["trial-0000", "trial-0001", "trial-0002", "trial-0003"]


def test_a_checkpoints_folder_is_one_studys(tmp_path):
    """Issue 31 #2: another study's folder, or names the study did not write, are refused."""
    mine = fake_study(tmp_path, [0.5])
    other = optuna.create_study()
    with pytest.raises(SoupkitError, match="belongs to study"):
        check_checkpoint_folder(tmp_path / "trials", other, "elsewhere", inside_run=False)
    (tmp_path / "trials" / OWNER_FILE).unlink()
    (tmp_path / "trials" / "trial-0009").mkdir()
    with pytest.raises(SoupkitError, match="trial-0009, which this study did not write"):
        check_checkpoint_folder(tmp_path / "trials", mine, "memory", inside_run=True)
    assert keep_best_checkpoints(mine, 0 + 1, tmp_path / "trials", log=lambda s: None) == []  # not claimed: no act


def test_a_run_from_before_owner_files_keeps_working_in_its_own_folder(tmp_path):
    """Old studies record absolute paths and their folder has no owner file: the search claims it
    (every name in it is one the study recorded) and the disk budget works as before."""
    study = fake_study(tmp_path, [0.1, 0.5, 0.3])
    (tmp_path / "trials" / OWNER_FILE).unlink()
    check_checkpoint_folder(tmp_path / "trials", study, str(tmp_path / "study.db"), inside_run=True)
    claim_checkpoint_folder(tmp_path / "trials", study, str(tmp_path / "study.db"))
    assert keep_best_checkpoints(study, 1, tmp_path / "trials", log=lambda s: None) == [2, 0]
    assert kept(tmp_path) == ["trial-0001"]


def test_a_copied_run_reads_its_own_models(tmp_path):
    """Soups and adapt's bank of a copied run read the copy's models, not the original's."""
    orig = tmp_path / "orig"
    study = fake_study(orig, [0.1, 0.5])
    for folder in (orig / "trials").glob("trial-*"):
        (folder / "modules.json").write_text("[]")
    copy = copy_run(orig)
    assert [i.checkpoint for i in ranked_ingredients(study, run=copy)] == [copy / "trials" / "trial-0001",
                                                                           copy / "trials" / "trial-0000"]
    assert ranked_ingredients(study, run=orig)[0].checkpoint == orig / "trials" / "trial-0001"
    shutil.rmtree(orig)  # moved, not copied: the models are found all the same
    assert len(ranked_ingredients(study, run=copy)) == 2 and ranked_ingredients(study) == []


@pytest.mark.slow
def test_a_copied_run_searches_on_without_touching_the_original(load_study, search, tiny_recipe, tiny_model, tmp_path):
    """Issue 31 #1 as reported: `cp -a runs/orig runs/copy && soupkit search --out runs/copy
    --budget 3 --keep-checkpoints 1` removed runs/orig's trial folders."""
    orig = tmp_path / "orig"
    search(tiny_recipe(tiny_model), orig, budget=2)
    before = sorted(p.name for p in (orig / "trials").iterdir())
    copy = copy_run(orig)
    recipe = tiny_recipe(tiny_model)
    recipe = Recipe.model_validate({**recipe.model_dump(), "search": {**recipe.search.model_dump(), "keep_checkpoints": 1}})
    assert search(recipe, copy, budget=3).completed == 3
    assert sorted(p.name for p in (orig / "trials").iterdir()) == before  # the original is whole
    assert len(kept(copy)) == 1
    study = load_study(copy)
    assert [i.checkpoint.parent for i in ranked_ingredients(study, run=copy)] == [copy / "trials"]
