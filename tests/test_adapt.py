"""`soupkit adapt`: soup weights searched over a bank of checkpoints, merged in memory, no training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from soupkit.cli import main
from soupkit.config import ObjectiveSpec
from soupkit.errors import SoupkitError
from soupkit.probes.score import ProbeSettings, score_probes
from soupkit.search.run import effective_recipe_json
from soupkit.search.study import default_storage
from soupkit.soups.adapt import run_adapt

QUIET = {"log": lambda line: None}


@pytest.fixture(scope="module")
def models(tiny_bert, tmp_path_factory) -> list[Path]:
    """A base and three 'checkpoints' of it: one architecture and tokenizer, different weights."""
    root = tmp_path_factory.mktemp("adapt-models")
    return [tiny_bert(root / f"model-{seed}", seed=seed) for seed in range(4)]


def fake_run(folder: Path, base: Path, checkpoints: list[Path], objectives: list[float], recipe) -> Path:
    """A run folder whose study records what `soupkit search` records: recipe, base, trials with
    checkpoints and objectives (the bank reads nothing else)."""
    folder.mkdir(parents=True)
    study = optuna.create_study(storage=default_storage(folder), study_name=recipe.name, direction="maximize")
    study.set_user_attr("recipe", effective_recipe_json(recipe))
    study.set_user_attr("base_model", str(base))
    distribution = optuna.distributions.FloatDistribution(1e-6, 1.0)
    for checkpoint, value in zip(checkpoints, objectives):
        study.add_trial(optuna.trial.create_trial(
            params={"x_a": 0.5}, distributions={"x_a": distribution}, value=value,
            user_attrs={"checkpoint": str(checkpoint), "objective": value}))
    return folder


def load_adapt_study(out: Path, name: str = "tiny-adapt"):
    return optuna.load_study(study_name=name, storage=default_storage(out))


def probe_scores(path: Path, recipe) -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    from soupkit.data.load import load_recipe_families

    _, probes = load_recipe_families(recipe)
    return score_probes(SentenceTransformer(str(path), device="cpu"), probes, ProbeSettings.from_recipe(recipe, False))


@pytest.mark.slow
def test_adapt_seeds_searches_and_writes_the_best_soups(tiny_recipe, models, tmp_path):
    recipe = tiny_recipe(models[0])
    run = fake_run(tmp_path / "run", models[0], models[1:], [0.3, 0.5, 0.4], recipe)
    out = tmp_path / "adapt"
    result = run_adapt(recipe, [run], out, budget=6, keep=2, **QUIET)

    labels = ["base", "run:trial-0000", "run:trial-0001", "run:trial-0002"]
    assert [m.label for m in result.bank] == labels and result.skipped == {}
    study = load_adapt_study(out)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6 and result.proposals == 6
    # seeds: the base alone, the uniform soup, the two best checkpoints alone (by their run's objective)
    assert [t.user_attrs.get("seeded") for t in trials[:4]] == [
        "base alone", "uniform", "run:trial-0001 alone", "run:trial-0002 alone"]
    assert trials[0].user_attrs["weights"] == {"base": 1.0, "run:trial-0000": 0.0, "run:trial-0001": 0.0,
                                               "run:trial-0002": 0.0}
    assert trials[1].user_attrs["weights"] == pytest.approx(dict.fromkeys(labels, 0.25))
    # a one-hot proposal merged in memory is that model exactly: the same scores as from its folder
    assert trials[0].user_attrs["scores"] == probe_scores(models[0], recipe) == result.base_scores
    assert trials[2].user_attrs["scores"] == probe_scores(models[2], recipe)
    assert study.user_attrs["base_scores"] == result.base_scores
    assert all(set(t.user_attrs["seconds"]) == {"merge", "probe"} for t in trials)

    # the best two proposals written (nothing else), as the weighted merge of their members
    ranked = sorted(trials, key=lambda t: (-t.values[0], t.number))[:2]
    assert [s.trial for s in result.soups] == [t.number for t in ranked]
    assert sorted(p.name for p in (out / "soups").iterdir()) == sorted(s.name for s in result.soups)
    paths = dict(zip(labels, models))
    for soup, trial in zip(result.soups, ranked):
        weights = {k: v for k, v in trial.user_attrs["weights"].items() if v > 0}
        assert soup.weights == weights
        expected = sum(w * load_file(paths[k] / "2_Dense" / "model.safetensors")["linear.weight"]
                       for k, w in weights.items()) / sum(weights.values())
        written = load_file(soup.path / "2_Dense" / "model.safetensors")["linear.weight"]
        torch.testing.assert_close(written, expected, atol=1e-6, rtol=0)
        assert soup.scores == probe_scores(soup.path, recipe)  # recorded: the scores of the folder on disk
        # (in memory and on disk the models agree to 1e-6, test_in_memory_merge.py; a random tiny
        # model's near-tied similarities make its probe scores too fragile to compare here)
    recorded = load_adapt_study(out).user_attrs["soups"]
    assert list(recorded) == [s.name for s in result.soups]
    assert recorded[result.soups[0].name]["weights"] == result.soups[0].weights
    assert recorded[result.soups[0].name]["method"] == "adapt"

    # resuming adds proposals up to the new budget; another bank is refused
    again = run_adapt(recipe, [run], out, budget=7, keep=1, **QUIET)
    assert again.proposals == 7 and len(load_adapt_study(out).trials) == 7
    other = fake_run(tmp_path / "other", models[0], models[1:3], [0.1, 0.2], recipe)
    with pytest.raises(SoupkitError, match="the bank differs from the one this adapt study was started with"):
        run_adapt(recipe, [other], out, budget=8, **QUIET)


def _narrow_head(source: Path, destination: Path, width: int) -> Path:
    shutil.copytree(source, destination)
    config_file = destination / "2_Dense" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "out_features": width}))
    head = destination / "2_Dense" / "model.safetensors"
    save_file({k: v[:width].contiguous() for k, v in load_file(head).items()}, head)
    return destination


@pytest.mark.slow
def test_unmergeable_members_are_named_and_skipped(tiny_recipe, models, tmp_path):
    recipe = tiny_recipe(models[0])
    narrow = _narrow_head(models[3], tmp_path / "narrow", 8)
    run = fake_run(tmp_path / "run", models[0], [models[1], narrow], [0.3, 0.5], recipe)
    lines: list[str] = []
    result = run_adapt(recipe, [run], tmp_path / "adapt", budget=3, keep=1, log=lines.append)
    assert [m.label for m in result.bank] == ["base", "run:trial-0000"]
    assert list(result.skipped) == ["run:trial-0001"]
    skipped = [line for line in lines if line.startswith("bank: skipped")]
    assert skipped == [f"bank: skipped run:trial-0001: {narrow}/2_Dense/model.safetensors: tensor 'linear.weight' "
                       f"has shape [8, 32], but {tmp_path}/adapt/base-model/2_Dense/model.safetensors has [16, 32]"]


def test_fewer_than_two_mergeable_is_one_line_and_writes_nothing(tiny_recipe, models, tmp_path):
    recipe = tiny_recipe(models[0])
    odd = [_narrow_head(models[i], tmp_path / f"narrow-{w}", w) for i, w in ((1, 8), (2, 4))]
    run = fake_run(tmp_path / "run", models[0], odd, [0.3, 0.5], recipe)
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(json.dumps(recipe.model_dump(mode="json")))
    out = tmp_path / "adapt"
    done = CliRunner().invoke(main, ["adapt", "--recipe", str(recipe_file), "--bank", str(run), "--out", str(out)])
    assert done.exit_code == 2
    assert done.output.strip().splitlines()[-1] == (
        "error: adapt needs at least two mergeable checkpoints in the bank; 1 left (2 skipped as not mergeable)")
    assert not out.exists()


def test_bad_input_is_one_line_and_writes_nothing(tiny_recipe, models, tmp_path):
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(json.dumps(tiny_recipe(models[0]).model_dump(mode="json")))
    run = fake_run(tmp_path / "run", models[0], models[1:3], [0.3, 0.5], tiny_recipe(models[0]))
    out = tmp_path / "adapt"
    cases = [
        ([], "error: adapt needs --bank RUN [RUN ...]: run folders whose checkpoints form the bank"),
        (["--bank", str(tmp_path / "nowhere")],
         f"error: --bank {tmp_path / 'nowhere'}: no study found ({tmp_path / 'nowhere' / 'study.db'} does not exist; "
         "run `soupkit search --out` there first)"),
        (["--bank", str(run), str(run)], f"error: --bank {run}: run named twice"),
        (["--bank", str(run), "--budget", "0"], "error: --budget must be a positive number of proposals, got 0"),
        (["--bank", str(run), "--out", str(run)],
         f"error: --out {run} is one of the --bank runs; give adapt a folder of its own"),
        (["--bank", str(run), "--out", str(tmp_path)],
         f"error: --out {tmp_path} is not empty (run, tiny.yaml) and not an adapt run; "
         "choose a new or empty folder"),
    ]
    for args, expected in cases:
        done = CliRunner().invoke(main, ["adapt", "--recipe", str(recipe_file), "--out", str(out), *args])
        assert done.exit_code == 2, done.output
        assert done.output.strip() == expected
        assert not out.exists()
    unknown = CliRunner().invoke(main, ["adapt", "--recipe", str(tmp_path / "none.yaml"), "--bank", str(run)])
    assert unknown.exit_code == 2 and unknown.output.startswith("error: recipe file not found")


@pytest.mark.slow
def test_adapt_on_a_real_search_with_a_pareto_recipe(search, tiny_recipe, tiny_model, tmp_path):
    """End to end from the CLI: a search's run folder is the bank; the shipped soup is the best
    domain score within the general bound; report shows the soups."""
    recipe = tiny_recipe(tiny_model, learning_rate=5e-3)
    search(recipe, tmp_path / "run", budget=2)
    pareto = recipe.model_copy(update={"objective": ObjectiveSpec(mode="pareto", domain=["medical-icd10"])})
    recipe_file = tmp_path / "pareto.yaml"
    recipe_file.write_text(json.dumps(pareto.model_dump(mode="json")))
    out = tmp_path / "adapt"
    done = CliRunner().invoke(main, ["adapt", "--recipe", str(recipe_file), "--bank", str(tmp_path / "run"),
                                     "--budget", "5", "--keep", "2", "--out", str(out), "--quiet"])
    assert done.exit_code == 0, done.output
    study = load_adapt_study(out)
    assert len(study.directions) == 2
    soups = study.user_attrs["soups"]
    roles = [s["role"] for s in soups.values()]
    assert roles[0] == "ship" and set(roles[1:]) <= {"front"} and 1 <= len(roles) <= 2
    assert "soup adapt-" in done.output and "(ship)" in done.output and "CPU-seconds" in done.output
    report = CliRunner().invoke(main, ["report", "--out", str(out), "--no-attach"])
    assert report.exit_code == 0, report.output
    assert f"soup {next(iter(soups))} (adapt" in report.output


def test_held_out_probes_whose_source_the_bank_trained_on_are_named(tiny_recipe, models, tmp_path):
    from soupkit.config import Recipe
    from soupkit.soups.bank import held_out_overlaps

    trained = tiny_recipe(models[0]).model_copy(update={"families": ["medical-icd10", "topic-classification"]})
    run = fake_run(tmp_path / "default", models[0], models[1:3], [0.3, 0.5], trained)
    domain = Recipe.model_validate({"name": "med", "families": ["medical-icd10"],
                                    "probe_only": ["medical-wordnet", "legal-courts"]})
    assert held_out_overlaps(domain, [run]) == [
        f"held-out probe 'medical-wordnet' (WordNet 3.0 (Debian wordnet-base)) is not held out from bank run {run}: "
        "it trained on topic-classification from the same source"]
    clean = Recipe.model_validate({"name": "med", "families": ["medical-icd10"], "probe_only": ["legal-courts"]})
    assert held_out_overlaps(clean, [run]) == []


def _top_of(base: Path, donor: Path, out: Path) -> Path:
    """A top:1 'checkpoint' of `base`: its top layer and heads taken from `donor`, the rest the base's."""
    from sentence_transformers import SentenceTransformer

    from soupkit.models.layers import backbone_of

    model, other = SentenceTransformer(str(base), device="cpu"), SentenceTransformer(str(donor), device="cpu")
    frozen = set(backbone_of(model).frozen_names(model, 1))
    model.load_state_dict({n: v if n in frozen else other.state_dict()[n] for n, v in model.state_dict().items()})
    model.save(str(out))
    return out


@pytest.mark.slow
def test_a_bank_of_top_k_checkpoints_is_scored_on_the_cached_trunk(tiny_recipe, models, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from soupkit.models.trunk import attach_trunk

    monkeypatch.setenv("SOUPKIT_HOME", str(tmp_path / "home"))
    recipe = tiny_recipe(models[0], train="top:1")
    attach_trunk(SentenceTransformer(str(models[0]), device="cpu"), 1)  # as the search's finetunes made it
    tops = [_top_of(models[0], donor, tmp_path / f"top-{i}") for i, donor in enumerate(models[1:3])]
    lines: list[str] = []
    run_adapt(recipe, [fake_run(tmp_path / "run", models[0], tops, [0.3, 0.5], recipe)], tmp_path / "adapt",
              budget=3, keep=1, log=lines.append)
    assert any("scored on the cached trunk" in line for line in lines), lines
    lines.clear()
    run_adapt(recipe, [fake_run(tmp_path / "full", models[0], models[1:3], [0.3, 0.5], recipe)],
              tmp_path / "adapt-full", budget=3, keep=1, log=lines.append)
    assert any("differ below their top 1 layers" in line for line in lines), lines


def test_a_bank_reads_the_trunk_cache_of_the_layers_it_varies_or_says_why_not(models, tmp_path, monkeypatch):
    """The bank, not only the recipe, says which top layers differ: a bank searched with
    `--train top:1` over a recipe that trains `all` still scores on the cache (the defect of issue 28)."""
    from sentence_transformers import SentenceTransformer

    from soupkit.merge.in_memory import InMemoryMerge
    from soupkit.models.trunk import attach_trunk, binding_of
    from soupkit.search.merge_proxy import join_bank_trunk

    monkeypatch.setenv("SOUPKIT_HOME", str(tmp_path / "home"))
    tops = [_top_of(models[0], donor, tmp_path / f"top-{i}") for i, donor in enumerate(models[1:3])]
    merger = InMemoryMerge(tops, "cpu")
    lines: list[str] = []
    assert not join_bank_trunk(merger, "all", "tiny", lines.append)  # no finetune of top:1 made its cache yet
    assert binding_of(merger.model) is None
    attach_trunk(SentenceTransformer(str(models[0]), device="cpu"), 1)  # as a top:1 search's finetunes make it
    assert join_bank_trunk(merger, "all", "tiny", lines.append)
    assert binding_of(merger.model).k == 1
    full = InMemoryMerge([models[0], models[1]], "cpu")
    assert not join_bank_trunk(full, "all", "tiny", lines.append)
    assert not join_bank_trunk(full, "top:1", "tiny", lines.append)
    assert lines == [
        "proposals are scored without the trunk cache: no cache of this bank's bottom yet for top:1 "
        "(a search or finetune of tiny with train top:1 makes one)",
        "proposals are scored on the cached trunk (the bank shares its bottom; top 1 layers merged)",
        "the bank's models differ in every layer: proposals are scored without the trunk cache",
        "the bank's models differ below their top 1 layers: proposals are scored without the trunk cache",
    ]
