"""The search loop on a tiny model and real ICD-10 slices: records, resume, recovery, failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import load_file

from soupkit.config import Recipe
from soupkit.errors import SoupkitError
from soupkit.search.space import params_for_mixture
from soupkit.search.study import default_storage, open_study

FAMILIES = ["medical-icd10", "medical-icd10-chapters"]


@pytest.mark.slow
def test_search_records_every_trial_and_resumes(load_study, search, tiny_recipe, tiny_model, tmp_path):
    out = tmp_path / "run"
    result = search(tiny_recipe(tiny_model), out)
    assert result.completed == 2
    study = load_study(out)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    # the first trial is the recipe's seed mixture
    assert trials[0].user_attrs["mixture"] == {"medical-icd10": 0.75, "medical-icd10-chapters": 0.25}
    for t in trials:
        assert set(t.user_attrs) >= {"mixture", "scores", "checkpoint", "seconds", "worker"}
        assert t.user_attrs["sampler"] == "tpe"  # what proposed it: workers of one study may differ
        assert set(t.user_attrs["scores"]) == set(FAMILIES)
        assert set(t.user_attrs["seconds"]) == {"finetune", "probe"}
        ckpt = Path(t.user_attrs["checkpoint"])
        assert (ckpt / "modules.json").is_file() and (ckpt / "mixture.yaml").is_file()
        assert (ckpt / "soupkit_trial.yaml").is_file()
    assert set(study.user_attrs["base_scores"]) == set(FAMILIES)
    # what optuna-dashboard shows: named objectives, and each weight and score as a number it sorts
    # and plots (not only the raw x_<family> draws)
    assert study.metric_names == ["objective"]
    for t in trials:
        assert {f: t.user_attrs[f"weight {f}"] for f in FAMILIES} == t.user_attrs["mixture"]
        assert {p: t.user_attrs[f"score {p}"] for p in FAMILIES} == t.user_attrs["scores"]
    assert not list((out / "trials").glob(".tmp-*"))

    # the same command again finishes nothing more; a larger budget runs exactly the difference
    assert search(tiny_recipe(tiny_model), out).completed == 2
    assert search(tiny_recipe(tiny_model), out, budget=3).completed == 3
    assert len(load_study(out).trials) == 3


@pytest.mark.slow
def test_same_seed_and_mixture_give_the_same_checkpoint(tiny_recipe, tiny_model, tmp_path):
    from soupkit.base_model import load_model
    from soupkit.data.load import load_families
    from soupkit.train.finetune import finetune_on_mixture

    recipe = tiny_recipe(tiny_model)
    families = load_families(recipe)
    weights = {"medical-icd10": 0.5, "medical-icd10-chapters": 0.5}
    tensors = []
    for i in range(2):
        model = load_model(str(tiny_model), "cpu")
        finetune_on_mixture(model, families, weights, recipe.finetune, tmp_path / f"c{i}", seed=0, bf16=False)
        tensors.append(load_file(tmp_path / f"c{i}" / "model.safetensors"))
    assert tensors[0].keys() == tensors[1].keys()
    assert all(torch.equal(tensors[0][k], tensors[1][k]) for k in tensors[0])
    original = load_file(tiny_model / "model.safetensors")
    assert any(not torch.equal(original[k], tensors[0][k]) for k in original if original[k].is_floating_point())


@pytest.mark.slow
def test_diverging_trials_fail_with_their_reason(load_study, search, tiny_recipe, tiny_model, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(tiny_model)
    # past the bound a recipe may set (learning_rate <= 1): model_copy does not validate
    diverging = recipe.model_copy(update={"finetune": recipe.finetune.model_copy(update={"learning_rate": 1e30})})
    with pytest.raises(SoupkitError, match="2 trials failed in a row"):
        search(diverging, out, max_failures=2)
    trials = load_study(out).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all("loss became nan" in t.user_attrs["error"] for t in trials)


@pytest.mark.slow
def test_trial_of_a_killed_worker_is_rerun_with_its_mixture(load_study, search, tiny_recipe, tiny_model, tmp_path):
    out = tmp_path / "run"
    search(tiny_recipe(tiny_model), out, budget=1)
    study = load_study(out)
    # a worker on this host that died mid-trial: its trial stays RUNNING
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trial = study.ask({"x_" + f: optuna.distributions.FloatDistribution(1e-6, 1.0) for f in FAMILIES})
    params = params_for_mixture({"medical-icd10": 0.1, "medical-icd10-chapters": 0.9}, FAMILIES)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # placeholder to consume the ask
    study.enqueue_trial(params)
    running = study.ask()
    running.set_user_attr("worker", {"host": __import__("socket").gethostname(), "pid": int(dead.stdout)})

    search(tiny_recipe(tiny_model), out, budget=2)
    trials = load_study(out).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 2
    assert trials[running.number].state.name == "FAIL"
    assert trials[running.number].user_attrs["error"] == "worker process died"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == running.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].user_attrs["mixture"] == pytest.approx({"medical-icd10": 0.1, "medical-icd10-chapters": 0.9})


@pytest.mark.slow
def test_a_study_of_another_recipe_is_not_mixed_in(search, tiny_recipe, tiny_model, tmp_path):
    out = tmp_path / "run"
    search(tiny_recipe(tiny_model), out, budget=1)
    with pytest.raises(SoupkitError, match="different recipe \\(field 'finetune' differs\\)"):
        search(tiny_recipe(tiny_model, steps=5), out, budget=2)


@pytest.mark.slow
def test_pareto_search_keeps_domain_and_general_values(search, tiny_recipe, tiny_model, tmp_path):
    recipe = tiny_recipe(tiny_model)
    recipe = Recipe.model_validate(
        {**recipe.model_dump(), "objective": {"mode": "pareto", "domain": ["medical-icd10"]}}
    )
    out = tmp_path / "run"
    search(recipe, out, budget=2)
    study = open_study(default_storage(out), "tiny", None, ["maximize", "maximize"])
    assert study.metric_names == ["domain", "general"]
    for t in study.trials:
        scores = t.user_attrs["scores"]
        assert t.values == pytest.approx([scores["medical-icd10"], scores["medical-icd10-chapters"]])
        assert t.user_attrs["objective"] == pytest.approx(sum(scores.values()) / 2)
    assert 1 <= len(study.best_trials) <= 2


def test_hard_negative_column_is_used_when_some_rows_have_one(tiny_model):
    from soupkit.base_model import load_model
    from soupkit.data.family import TrainExample
    from soupkit.train.batches import Batch
    from soupkit.train.finetune import batch_features

    model = load_model(str(tiny_model), "cpu")
    rows = [TrainExample("q1", "p1", "n1", "g1"), TrainExample("q2", "p2", None, "g2"), TrainExample("q3", "p3", None, "g3")]
    features = batch_features(model, Batch("f", rows), "retrieval", use_negatives=True)
    assert len(features) == 3
    expected = model.preprocess(["n1", "p3", "p1"])["input_ids"]
    assert torch.equal(features[2]["input_ids"], expected)
    assert len(batch_features(model, Batch("f", rows), "retrieval", use_negatives=False)) == 2
    plain = [TrainExample("q1", "p1", None, "g1"), TrainExample("q2", "p2", None, "g2")]
    assert len(batch_features(model, Batch("f", plain), "retrieval", use_negatives=True)) == 2


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:hunter2@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgresql://u@db/x?password=hunter2&sslmode=require", "postgresql://u@db/x?password=***&sslmode=require"),
        ("mysql+pymysql://u:hunter2@db/x", "mysql+pymysql://u:***@db/x"),
        ("sqlite:////tmp/run/study.db", "sqlite:////tmp/run/study.db"),
        ("not a url ://u:hunter2@x/?password=hunter2", "not a url ://u:***@x/?password=***"),
        # issue 31 #5: a raw '@' (or ':', '/', '#', '?') in the password: masked up to the last '@'
        ("postgresql://alice:hunter2@ngPw55@db/x", "postgresql://alice:***@db/x"),
        ("postgresql://alice:hunter2:w@rd@db:5432/x?sslmode=require", "postgresql://alice:***@db:5432/x?sslmode=require"),
        ("postgresql://alice:hunter2/#?x@db/x", "postgresql://alice:***@db/x"),
        ("postgresql://u@db/x?sslmode=require&PASSWORD=hunter2", "postgresql://u@db/x?sslmode=require&PASSWORD=***"),
    ],
)
def test_storage_urls_are_shown_without_passwords(url, shown):
    from soupkit.search.study import redact, redact_text, redacted_command

    assert redact(url) == shown
    assert "hunter2" not in redacted_command(["soupkit", "search", "--storage", url])
    assert "hunter2" not in redacted_command(["soupkit", "search", f"--storage={url}"])
    if "hunter2" in url:
        assert "hunter2" not in redact_text(f"could not connect to {url}: password hunter2 rejected", url)
