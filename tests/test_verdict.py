"""`soupkit eval`, the verdict: every probe's test half, each model against the base, intervals
checked against scipy; the test split of every family; bad input is one line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soupkit.cli import main
from soupkit.config import Recipe
from soupkit.data.halves import EVERY_PROBE_HALVED, HELD_OUT_HALVED, selection_half
from soupkit.data.load import load_probes, load_recipe_families
from soupkit.soups.compare import differences


def _scipy_interval(base: np.ndarray, model: np.ndarray, seed: int) -> tuple[float, float]:
    from scipy.stats import bootstrap

    result = bootstrap(((model - base),), np.mean, n_resamples=10_000, confidence_level=0.95, method="percentile",
                       rng=np.random.default_rng(seed))
    return result.confidence_interval.low, result.confidence_interval.high


@pytest.mark.parametrize("shift, beyond", [(0.3, True), (0.0, False), (-0.3, True)])
def test_interval_and_beyond_noise_mark_agree_with_scipy(shift, beyond):
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 1, 60)
    model = np.clip(base + shift + rng.normal(0, 0.1, 60), -1, 2)
    items = {"m": {"p": model, "set": None}, "base": {"p": base, "set": None}}
    (d,) = differences(items, "m", ["base"], seed=3)
    low, high = _scipy_interval(base, model, seed=3)
    assert d.mean == pytest.approx(float((model - base).mean()))
    assert (d.low, d.high) == pytest.approx((low, high), abs=1e-12)
    assert d.items == 60 and d.beyond_noise is beyond and d.beyond_noise == (low > 0 or high < 0)


def _recipe(**extra) -> Recipe:
    return Recipe.model_validate({
        "name": "split", "families": ["medical-icd10", "medical-icd10-chapters", "clustering"],
        "probes": {"probe_size": 40, "probe_corpus": 80, "max_train": 200}, **extra,
    })


def _items(probe) -> set[str]:
    """What a probe scores, item by item: queries, labelled texts, clustering texts."""
    for field in ("queries", "test_texts", "texts", "left"):
        if getattr(probe, field, None):
            return set(getattr(probe, field))
    raise AssertionError(f"no items in {probe}")


def test_every_family_has_a_test_half_disjoint_from_the_selection_half_and_stable():
    recipe = _recipe(probe_only=["legal-wordnet"])
    selection, test = load_probes(recipe, "selection"), load_probes(recipe, "test")
    kinds = {type(f.probe).__name__ for f in test.values()}
    assert kinds == {"RetrievalProbeData", "ClassificationProbeData", "ClusteringProbeData"}
    families, searched = load_recipe_families(recipe)
    for name in recipe.probe_names():
        sel, tst = _items(selection[name].probe), _items(test[name].probe)
        assert sel and tst and sel.isdisjoint(tst), name
        assert searched[name].probe == selection[name].probe, name  # the search scores the selection half
        assert not test[name].train
    for name, family in families.items():  # the halves partition the family's whole probe
        assert _items(selection[name].probe) | _items(test[name].probe) == _items(family.probe)
    assert load_probes(recipe, "test") == test  # fixed by the seed
    other = load_probes(recipe.model_copy(update={"seed": 1}), "test")
    assert _items(other["medical-icd10-chapters"].probe) != _items(test["medical-icd10-chapters"].probe)


def test_an_older_study_keeps_scoring_its_trained_families_whole():
    import optuna

    from soupkit.search.study import check_held_out_halves

    recipe = _recipe()
    fresh = optuna.create_study()
    assert check_held_out_halves(fresh, recipe, record=True) == EVERY_PROBE_HALVED
    assert check_held_out_halves(fresh, recipe) == EVERY_PROBE_HALVED
    old = optuna.create_study()  # a study with trials and no mark: made before trained families were halved
    old.enqueue_trial({"x": 1.0})
    assert check_held_out_halves(old, recipe, record=True) == HELD_OUT_HALVED
    families, probes = load_recipe_families(recipe, scheme=HELD_OUT_HALVED)
    assert probes["medical-icd10"].probe == families["medical-icd10"].probe
    assert probes["medical-icd10"].probe != selection_half(families["medical-icd10"], recipe.seed).probe


@pytest.fixture
def eval_setup(tiny_model, tiny_bert, tiny_recipe_file, tmp_path):
    other = tiny_bert(tmp_path / "other", seed=1)
    recipe = tiny_recipe_file(tiny_model, tmp_path / "recipe.yaml", probe_only=["legal-wordnet"],
                              probes={"probe_size": 20, "probe_corpus": 40, "max_seq_length": 32, "max_train": 200})
    return tiny_model, other, recipe


def test_eval_writes_one_record_per_model_and_probe(eval_setup, tmp_path):
    base, other, recipe = eval_setup
    run = tmp_path / "run"  # a run folder's soup also lands in <run>/verdict.json
    soup = run / "soups" / "uniform-top2"
    shutil.copytree(other, soup)
    (run / "recipe.yaml").write_text(recipe.read_text())
    import optuna

    from soupkit.search.study import default_storage

    older = optuna.create_study(study_name="tiny", storage=default_storage(run))  # no probe split recorded
    older.add_trial(optuna.trial.create_trial(value=0.5))
    out_json, out_csv = tmp_path / "v" / "verdict.json", tmp_path / "verdict.csv"
    result = CliRunner().invoke(main, ["eval", str(other), str(soup), "--recipe", str(recipe),
                                       "--json", str(out_json), "--csv", str(out_csv)])
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    probes = ["medical-icd10", "medical-icd10-chapters", "legal-wordnet"]
    assert data["split"] == "test" and data["models"] == [str(other), str(soup)]
    assert sorted((r["model"], r["probe"]) for r in data["records"]) == sorted(
        (m, p) for m in (str(other), str(soup)) for p in probes)
    roles = {r["probe"]: r["role"] for r in data["records"]}
    assert roles == {"medical-icd10": "trained", "medical-icd10-chapters": "trained", "legal-wordnet": "held-out"}
    for r in data["records"]:
        assert r["items"] == 10  # the test half of 20 probe items
        assert r["low"] <= r["difference"] <= r["high"]
        assert r["difference"] == pytest.approx(r["score"] - r["base_score"], abs=1e-5)
        assert r["beyond_noise"] == (r["low"] > 0 or r["high"] < 0)
    # a copy of the same weights scores the same: no difference, nothing beyond the noise
    twins = {r["probe"]: r["score"] for r in data["records"] if r["model"] == str(other)}
    assert twins == {r["probe"]: r["score"] for r in data["records"] if r["model"] == str(soup)}
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == len(data["records"]) == 6
    in_run = json.loads((run / "verdict.json").read_text())["records"]
    assert {r["model"] for r in in_run} == {str(soup)} and len(in_run) == 3
    assert "legal-wordnet" in result.output and "held-out" in result.output
    # the run's study chose on its trained families' whole probes: the verdict says so
    assert len(data["notes"]) == 1 and "scored its trained families on their whole probes" in data["notes"][0]
    assert "note: " in result.output


def test_eval_of_a_model_against_itself_is_all_zero_and_never_beyond_the_noise(eval_setup, tmp_path):
    base, _, recipe = eval_setup
    out = tmp_path / "same.json"
    result = CliRunner().invoke(main, ["eval", str(base), "--recipe", str(recipe), "--split", "selection",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())["records"]
    assert {r["split"] for r in records} == {"selection"}
    assert all(r["difference"] == 0 and r["beyond_noise"] is False for r in records)
    assert "quote the test half" in result.output


def test_eval_bad_input_is_one_line(eval_setup, tmp_path, one_line_error):
    base, other, recipe = eval_setup
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "readme.txt").write_text("hello")
    out = tmp_path / "out.json"
    one_line_error(["eval", str(not_a_model), "--recipe", str(recipe), "--json", str(out)],
                   "not a sentence-transformers folder", str(not_a_model), workdir=tmp_path)
    one_line_error(["eval", str(tmp_path / "missing"), "--recipe", str(recipe), "--json", str(out)],
                   "model path not found", "missing", workdir=tmp_path)
    one_line_error(["eval", str(other), "--recipe", str(recipe), "--base", str(tmp_path / "nobase")],
                   "base model path not found", workdir=tmp_path)
    import yaml

    empty = tmp_path / "empty.yaml"
    empty.write_text(yaml.safe_dump({**yaml.safe_load(recipe.read_text()), "families": [], "probe_only": []}))
    one_line_error(["eval", str(other), "--recipe", str(empty)], "at least one family", workdir=tmp_path)
    assert not out.exists()


def test_soup_figure_draws_each_soups_members_and_its_test_verdict():
    import optuna

    from soupkit.report.model_figures import soups_vs_ingredients
    from soupkit.report.tables import collect_study
    from soupkit.study_record import SoupRecord, record_soup

    study = optuna.create_study()
    for value in (0.7542, 0.7521):  # the uniform soup of two trials the issue saw drawn without them
        study.add_trial(optuna.trial.create_trial(
            value=value, user_attrs={"objective": value, "mixture": {"a": 0.5, "b": 0.5}, "scores": {"a": value}}))
    record_soup(study, "uniform-top2", SoupRecord("uniform", [0, 1], {"a": 0.76}, 0.76, [0.76], "/r/soups/uniform-top2"))
    frames = collect_study(study)
    (ax,) = soups_vs_ingredients(frames).axes
    points = [line for line in ax.lines if line.get_marker() == "o"]
    assert sorted(points[0].get_ydata()) == [0.7521, 0.7542]

    record = {"path": "/r/soups/uniform-top2", "split": "test", "probe": "a", "difference": 0.02, "low": 0.01,
              "high": 0.03, "beyond_noise": True}
    frames.verdict = [record, {**record, "split": "selection"}, {**record, "path": "/r/soups/other"}]
    assert frames.soup_verdict("uniform-top2") == [record]
    left, right = soups_vs_ingredients(frames).axes[:2]
    assert [t.get_text() for t in right.get_xticklabels()] == ["a"]


@pytest.mark.slow
def test_search_prints_the_soup_and_eval_commands_that_then_run(tiny_model, tiny_recipe_file, tmp_path, monkeypatch):
    """The README's short path on the tiny recipe: search, then the two commands it prints, then
    the report, which shows the verdict's test numbers beside the soup."""
    import shlex

    recipe = tiny_recipe_file(tiny_model, tmp_path / "recipe.yaml")
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["search", "--recipe", str(recipe), "--out", str(out), "--quiet"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("next: make the soup"))
    soup_cmd, eval_cmd = (shlex.split(line.strip()) for line in lines[at + 1: at + 3])
    assert soup_cmd[:2] == ["soupkit", "soup"] and eval_cmd[:2] == ["soupkit", "eval"]
    made = CliRunner().invoke(main, soup_cmd[1:])
    assert made.exit_code == 0, made.output
    judged = CliRunner().invoke(main, eval_cmd[1:])
    assert judged.exit_code == 0, judged.output
    assert (out / "verdict.json").is_file()
    report = CliRunner().invoke(main, ["report", "--out", str(out), "--no-attach"])
    assert report.exit_code == 0, report.output
    assert "verdict, test halves" in report.output
    html = (out / "report.html").read_text()
    assert "test half: points vs base" in html


def test_eval_on_the_trunk_cache_equals_eval_without_it(eval_setup, trunk_home):
    """A `train: top:<k>` recipe's verdict reads the base's trunk cache where one exists, and the
    numbers are those of the uncached forward (the tiny BERT in fp32: equal to rounding)."""
    import sqlite3

    from soupkit.base_model import load_model
    from soupkit.config import load_recipe
    from soupkit.models.trunk import attach_trunk
    from soupkit.soups.verdict import evaluate_models

    base, other, recipe_file = eval_setup
    recipe = load_recipe(str(recipe_file))
    plain = evaluate_models([str(other)], recipe, split="test", device="cpu", train="all")
    binding = attach_trunk(load_model(str(base), "cpu"), 1)  # a top:1 search made the cache; it is empty
    cached = evaluate_models([str(other)], recipe, split="test", device="cpu", train="top:1")
    rows = sqlite3.connect(binding.cache.path).execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    assert rows > 0  # the base filled it (other's bottom differs: seed 1, so it encodes on its own)
    assert [(r.probe, r.items) for r in cached.records] == [(r.probe, r.items) for r in plain.records]
    for a, b in zip(plain.records, cached.records):
        assert b.base_score == pytest.approx(a.base_score, abs=1e-6)
        assert b.score == pytest.approx(a.score, abs=1e-6)
