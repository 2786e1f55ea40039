"""Crash safety: kill -9 a search during a finetune and during probing, and a soup while it writes.

The process is stopped at a known point by SOUPKIT_TEST_PAUSE_AT (soupkit.pause) and killed there.
Afterwards no model folder under a final name is partial (only `.tmp-*` names may
be), re-running resumes to the budget, and no completed trial is lost. A worker lost on another
machine is noticed by its missing heartbeat and its mixture re-run.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner

from soupkit.cli import main
import soupkit.search.study
from soupkit.model_folder import read_model_folder
from soupkit.search.checkpoints import OWNER_FILE

TRIAL_FILES = {"modules.json", "model.safetensors", "mixture.yaml", "config.json"}

pytestmark = pytest.mark.slow  # every test here trains (searches, then kills or resumes them)


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def assert_only_whole_models(folder: Path, expected_files: set[str]) -> None:
    """Every folder under a final (not hidden) name is a whole model; leftovers are hidden."""
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        assert expected_files <= {p.name for p in path.iterdir()}, path
        read_model_folder(path)  # every safetensors file complete and readable


def search_args(recipe: Path, out: Path, budget: int) -> list[str]:
    return ["search", "--recipe", str(recipe), "--budget", str(budget), "--out", str(out), "--quiet"]


@pytest.fixture
def recipe_file(tiny_recipe, tiny_model, tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tiny_model).model_dump(mode="json"), sort_keys=False))
    return path


@pytest.mark.parametrize("phase", ["finetune:2", "probe:2"])
def test_search_killed_mid_trial_resumes_and_loses_nothing(load_study, search, tiny_recipe, phase, recipe_file,
                                                           tiny_model, tmp_path, run_until_paused):
    out = tmp_path / "run"
    proc = run_until_paused(search_args(recipe_file, out, budget=3), phase, tmp_path)
    kill9(proc)

    trials_dir = out / "trials"
    study = load_study(out)
    first, killed = study.trials[0], study.trials[1]
    assert (first.state.name, killed.state.name) == ("COMPLETE", "RUNNING")
    hidden = [p.name for p in trials_dir.iterdir() if p.name.startswith(".") and p.name != OWNER_FILE]
    if phase.startswith("finetune"):
        # half-written under a temporary name; nothing of it under trial-0001
        assert not (trials_dir / "trial-0001").exists() and hidden and hidden[0].startswith(".tmp-trial-0001-")
    else:
        assert (trials_dir / "trial-0001" / "model.safetensors").is_file() and not hidden
    assert_only_whole_models(trials_dir, TRIAL_FILES)

    # the same search again: the dead worker's trial is re-run with its mixture, to the budget
    result = search(tiny_recipe(tiny_model), out, budget=3)
    assert result.completed == 3
    trials = load_study(out).trials
    assert trials[0].values == first.values and trials[0].user_attrs == first.user_attrs  # not lost
    assert trials[1].state.name == "FAIL" and trials[1].user_attrs["error"] == "worker process died"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == killed.params
    assert not [p for p in trials_dir.iterdir() if p.name.startswith(".") and p.name != OWNER_FILE]  # leftovers cleaned
    # (a trial killed while probing keeps its whole model folder, without the scores of a finished one)
    assert_only_whole_models(trials_dir, TRIAL_FILES)


def test_soup_killed_while_writing_leaves_no_partial_soup(load_study, search, tiny_recipe, tiny_model, tmp_path,
                                                          run_until_paused):
    out = tmp_path / "run"
    search(tiny_recipe(tiny_model), out, budget=2)
    proc = run_until_paused(["soup", "--out", str(out), "--top-k", "2"], "soup_write", tmp_path)
    soups = out / "soups"
    # the soup is written (and then scored) under a hidden temporary folder of the run
    staging = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert len(staging) == 1 and staging[0].startswith(".tmp-soup-uniform-top2-")
    assert not (soups / "uniform-top2").exists()
    kill9(proc)

    assert not (soups / "uniform-top2").exists()
    assert "soups" not in load_study(out).user_attrs  # nothing recorded for a soup never written

    done = CliRunner().invoke(main, ["soup", "--out", str(out), "--top-k", "2"])
    assert done.exit_code == 0, done.output
    assert_only_whole_models(soups, {"modules.json", "model.safetensors", "soupkit_merge.yaml"})
    assert sorted(load_study(out).user_attrs["soups"]["uniform-top2"]["members"]) == [0, 1]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_trial_of_a_lost_machine_is_retried_once_its_heartbeat_stops(load_study, search, tiny_recipe, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(soupkit.search.study, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(soupkit.search.study, "GRACE_SECONDS", 1)
    out = tmp_path / "run"
    search(tiny_recipe(tiny_model), out, budget=1)
    study = load_study(out)
    # a worker on another machine started a trial, sent one heartbeat, and was never heard of again
    space = {f"x_{f}": optuna.distributions.FloatDistribution(1e-6, 1.0)
             for f in ("medical-icd10", "medical-icd10-chapters")}
    lost = study.ask(space)
    lost.set_user_attr("worker", {"host": "another-machine", "pid": 1})
    study._storage.record_heartbeat(lost._trial_id)
    time.sleep(2.5)

    assert search(tiny_recipe(tiny_model), out, budget=2).completed == 2
    trials = load_study(out).trials
    assert trials[lost.number].state.name == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == lost.params


def interrupt(proc: subprocess.Popen) -> str:
    """Ctrl-C, as a terminal sends it; the process's whole output."""
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert "Traceback" not in output and "Aborted!" not in output, output[-3000:]
    assert proc.returncode == 130, output[-3000:]  # what shells expect of Ctrl-C (used to be 1, "Aborted!")
    return output


def test_ctrl_c_before_the_first_trial_leaves_no_run_folder(recipe_file, tmp_path, run_until_paused):
    out = tmp_path / "run"
    proc = run_until_paused(search_args(recipe_file, out, budget=1), "first_trial", tmp_path)
    assert (out / "study.db").is_file()  # the base model was scored: the folder exists at this point
    output = interrupt(proc)
    assert "interrupted: before the first trial started; nothing was written" in output
    assert not out.exists()


def test_ctrl_c_during_a_trial_says_what_was_saved_and_resume_reruns_its_mixture(load_study, recipe_file, tmp_path,
                                                                                 run_until_paused):
    out = tmp_path / "run"
    args = search_args(recipe_file, out, budget=2)
    proc = run_until_paused(args, "probe:2", tmp_path)
    output = interrupt(proc)
    line = next(line for line in output.splitlines() if line.startswith("interrupted: "))
    assert f"1 completed trial saved in {out / 'study.db'} (models in {out / 'trials'})" in line
    assert "trial #1 was cut short and runs again with its mixture" in line
    assert line.endswith("resume with: soupkit " + " ".join(args))
    cut = load_study(out).trials[1]
    assert cut.state.name == "FAIL" and cut.user_attrs["error"] == "interrupted"

    resumed = CliRunner().invoke(main, args)
    assert resumed.exit_code == 0, resumed.output
    # it said "re-queued interrupted trials: 1" (a trial number read as a count), or "...: 0" for trial 0
    assert "re-queued 1 interrupted trial (#1): its mixture runs again" in resumed.output
    trials = load_study(out).trials
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == cut.params
