"""The README's main command, small: `soupkit search` on the default recipe and bundled model."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(2400)  # two searches of up to 1200 s and 600 s on a busy machine
def test_search_on_default_recipe_with_bundled_model(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "soupkit.cli", "search", "--budget", "2", "--steps", "3", "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trial 2/2" in done.stdout and "top trials" in done.stdout and "best objective" in done.stdout

    import optuna

    from soupkit.search.study import default_storage, open_study

    study = open_study(default_storage(out), "default", None, ["maximize"])
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 2
    assert len(trials[0].user_attrs["scores"]) == 7
    assert (out / "recipe.yaml").is_file()

    # re-running the finished command trains nothing more
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trial 1/2" not in again.stdout and "trial 2/2" not in again.stdout
    assert len(open_study(default_storage(out), "default", None, ["maximize"]).trials) == 2
