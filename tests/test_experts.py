"""`soupkit experts` and `soupkit search --by-merging`: the expert bank, its records, resume and
crash safety, merge-proxy trials, the confirmation by ingredients, and bad input."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from soupkit.cli import main
from soupkit.search.checkpoints import OWNER_FILE


def test_expert_mixtures_default_pareto_and_alone():
    from soupkit.config import RECIPES_DIR, load_recipe
    from soupkit.soups.experts import expert_mixtures, general_families

    default = load_recipe(RECIPES_DIR / "default.yaml")
    names = default.family_names()
    mixtures = expert_mixtures(default, 0.5)
    assert list(mixtures) == names
    for family, mixture in mixtures.items():  # every other family shares the general half uniformly
        assert mixture[family] == 0.5 and set(mixture) == set(names)
        assert sum(mixture.values()) == pytest.approx(1, abs=1e-5)
        assert len({round(w, 6) for f, w in mixture.items() if f != family}) == 1
    assert expert_mixtures(default, 0) == {f: {f: 1.0} for f in names}

    medical = load_recipe(RECIPES_DIR / "medical.yaml")
    general = general_families(medical)
    assert general == [f for f in medical.family_names() if f not in medical.objective.domain]
    assert general == ["general-retrieval", "paraphrase", "code-search"]
    mixtures = expert_mixtures(medical, 0.25)
    assert mixtures["medical-icd10"] == {"medical-icd10": 0.75, **{g: round(0.25 / 3, 6) for g in general}}
    # a general family's expert mixes the other general families, never itself twice
    assert mixtures["paraphrase"] == {"paraphrase": 0.75, "general-retrieval": 0.125, "code-search": 0.125}


@pytest.mark.parametrize("args, needles", [
    (["--general-share", "1"], ["--general-share", "[0, 1)", "got 1.0"]),
    (["--general-share", "-0.1"], ["--general-share", "got -0.1"]),
    (["--general-share", "nan"], ["--general-share"]),
    (["--general-share", "0.5"], ["--general-share 0.5", "as much of another family"]),  # two families: one model
])
def test_a_general_share_outside_zero_one_is_one_line(args, needles, tiny_model, tiny_recipe_file, tmp_path,
                                                       one_line_error):
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    one_line_error(["experts", "--recipe", str(recipe), "--out", str(tmp_path / "run"), *args], *needles,
                   workdir=tmp_path)
    assert not (tmp_path / "run").exists()


def test_a_recipe_with_one_family_is_one_line(tiny_model, tiny_recipe_file, tmp_path, one_line_error):
    recipe = tiny_recipe_file(tiny_model, tmp_path / "one.yaml", families=["medical-icd10"],
                              seed_mixture={"medical-icd10": 1})
    one_line_error(["experts", "--recipe", str(recipe), "--out", str(tmp_path / "run")],
                   "trains on 1 family", "at least two", workdir=tmp_path)


def test_search_by_merging_without_experts_is_one_line(tiny_model, tiny_recipe_file, tmp_path, one_line_error):
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    one_line_error(["search", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--by-merging"],
                   "--by-merging", "no experts", "soupkit experts", workdir=tmp_path)
    one_line_error(["search", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--expert-bank", "x"],
                   "--by-merging", workdir=tmp_path)
    one_line_error(["search", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--by-merging",
                    "--storage", f"sqlite:///{tmp_path / 'other.db'}"], "--by-merging", "--storage", workdir=tmp_path)


# --- a tiny expert bank, shared by the tests below (each expert: 3 steps on the tiny model) ---

@pytest.fixture(scope="module")
def expert_run(tmp_path_factory, tiny_model_dir):
    import yaml

    from soupkit.config import Recipe

    root = tmp_path_factory.mktemp("experts")
    recipe = root / "tiny.yaml"
    data = Recipe.model_validate({
        "name": "tiny", "base": str(tiny_model_dir), "families": ["medical-icd10", "medical-icd10-chapters"],
        "seed_mixture": {"medical-icd10": 3, "medical-icd10-chapters": 1},
        "finetune": {"steps": 3, "batch_size": 4, "max_seq_length": 32, "bf16": False},
        "probes": {"probe_size": 20, "probe_corpus": 40, "max_seq_length": 32, "max_train": 200},
        "search": {"budget": 3, "sampler": "tpe", "n_startup_trials": 1},
        "ingredients": {"k": 2, "steps": 3},
    }).model_dump(mode="json")
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    out = root / "run"
    result = CliRunner().invoke(main, EXPERTS := ["experts", "--recipe", str(recipe), "--out", str(out), "--quiet",
                                                  "--general-share", "0.25"])
    assert result.exit_code == 0, result.output
    return recipe, out, result.output, EXPERTS


def _expert_study(out: Path):
    import optuna

    from soupkit.search.merge_proxy import find_expert_study
    from soupkit.search.study import default_storage, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return find_expert_study(open_storage(default_storage(out)), "tiny", str(out))


@pytest.mark.slow
def test_an_expert_bank_is_recorded_and_resumed(expert_run, folder_hash):
    from soupkit.search.merge_proxy import load_expert_bank
    from soupkit.study_record import StudyRecord, TrialRecord, expert_banks

    _, out, output, args = expert_run
    assert "expert bank 'share0.25-3steps'" in output
    study = _expert_study(out)
    assert StudyRecord.of(study).stage == "experts"
    bank = expert_banks(study)["share0.25-3steps"]
    assert bank["experts"] == {"medical-icd10": 0, "medical-icd10-chapters": 1}
    assert bank["settings"]["mixtures"]["medical-icd10"] == {"medical-icd10": 0.75, "medical-icd10-chapters": 0.25}
    for trial in study.get_trials():
        record = TrialRecord.of(trial)
        assert record.has_model() and record.checkpoint.parent == (out / "experts").resolve()
        assert trial.user_attrs["expert_family"] in bank["experts"]
    loaded = load_expert_bank(study._storage, "tiny", ["medical-icd10", "medical-icd10-chapters"])
    assert loaded.name == "share0.25-3steps" and loaded.steps == 3 and loaded.general_share == 0.25

    before = folder_hash(out / "experts")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "resuming expert bank" in again.output and again.output.count("already trained") == 2
    assert folder_hash(out / "experts") == before and len(_expert_study(out).get_trials()) == 2

    # the experts are bank members of `soupkit adapt`, with their base
    from soupkit.soups.bank import collect_bank

    members = collect_bank([out], log=lambda _: None)
    assert sorted(m.kind for m in members) == ["base", "expert", "expert"]


@pytest.mark.slow
def test_experts_of_another_base_are_one_line(expert_run, tiny_bert, tmp_path, one_line_error):
    recipe, out, _, args = expert_run
    other = tiny_bert(tmp_path / "other", seed=1)
    one_line_error([*args, "--base", str(other)],
                   "different recipe", "'base'", workdir=out)
    one_line_error(["search", "--recipe", str(recipe), "--out", str(out), "--by-merging", "--base", str(other)],
                   "different recipe", "'base'", workdir=out)


@pytest.mark.slow
def test_a_merge_proxy_trial_scores_the_merge_of_the_experts_with_its_weights(expert_run):
    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.config import load_recipe
    from soupkit.data.load import load_recipe_families, probes_for_scheme
    from soupkit.merge.api import merge_models
    from soupkit.probes.score import ProbeSettings, score_probes
    from soupkit.search.study import check_held_out_halves, default_storage, open_study
    from soupkit.study_record import StudyRecord, TrialRecord, merge_proxy_of

    recipe_path, out, _, _ = expert_run
    result = CliRunner().invoke(main, ["search", "--recipe", str(recipe_path), "--out", str(out), "--by-merging",
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    assert "soupkit ingredients --out" in result.output
    study = open_study(default_storage(out), "tiny", None, ["maximize"])
    assert merge_proxy_of(study) == "share0.25-3steps" and StudyRecord.of(study).base_scores
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 3 and not (out / "trials").exists()
    recipe = load_recipe(recipe_path)
    families, probes = load_recipe_families(recipe)
    probes = probes_for_scheme(families, probes, recipe.seed, check_held_out_halves(study, recipe))
    settings = ProbeSettings.from_recipe(recipe, use_bf16(pick_device(), False))
    experts = [out / "experts" / "expert-0000", out / "experts" / "expert-0001"]
    for trial in done[:2]:
        record = TrialRecord.of(trial)
        assert merge_proxy_of(trial) == "share0.25-3steps" and record.checkpoint is None
        assert set(record.seconds) == {"merge", "probe"}
        weights = [record.mixture["medical-icd10"], record.mixture["medical-icd10-chapters"]]
        folder = out.parent / f"merged-{trial.number}"
        merge_models(experts, folder, method="weighted", weights=weights)
        scores = score_probes(load_model(str(folder), pick_device()), probes, settings)
        assert scores == pytest.approx(record.scores, abs=1e-4)

    # a trained search cannot resume a study searched by merging
    again = CliRunner().invoke(main, ["search", "--recipe", str(recipe_path), "--out", str(out), "--budget", "4",
                                      "--quiet"])
    assert again.exit_code == 2 and "is a search by merging" in again.output

    # proxies have no models to soup; the experts of the bank do
    proxies = CliRunner().invoke(main, ["soup", "--out", str(out), "--no-intervals"])
    assert proxies.exit_code == 2 and "search by merging" in proxies.output
    experts = CliRunner().invoke(main, ["soup", "--out", str(out), "--from", "experts", "--no-intervals"])
    assert experts.exit_code == 0, experts.output
    assert (out / "soups" / "uniform-share0.25-3steps-experts2").is_dir()

    # confirm: the best proxies finetuned for real as ingredients, then souped
    made = CliRunner().invoke(main, ["ingredients", "--out", str(out), "--k", "2", "--steps", "3", "--quiet"])
    assert made.exit_code == 0, made.output
    souped = CliRunner().invoke(main, ["soup", "--out", str(out), "--from", "ingredients", "--no-intervals"])
    assert souped.exit_code == 0, souped.output
    assert len(list((out / "soups").iterdir())) == 2


@pytest.mark.slow
def test_a_killed_experts_run_loses_nothing(tiny_model, tiny_recipe_file, tmp_path, run_until_paused):
    from soupkit.study_record import expert_banks

    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    args = ["experts", "--recipe", str(recipe), "--out", str(out), "--general-share", "0", "--quiet"]
    # the second expert's folder is half written when it is killed
    proc = run_until_paused(args, "finetune:2", tmp_path, timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    study = _expert_study(out)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "RUNNING"]
    assert expert_banks(study)["share0-3steps"]["experts"] == {"medical-icd10": 0, "medical-icd10-chapters": None}
    first = (out / "experts" / "expert-0000" / "model.safetensors").read_bytes()

    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    assert "already trained as #0" in done.output
    study = _expert_study(out)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert expert_banks(study)["share0-3steps"]["experts"] == {"medical-icd10": 0, "medical-icd10-chapters": 2}
    assert (out / "experts" / "expert-0000" / "model.safetensors").read_bytes() == first
    assert not [p for p in (out / "experts").iterdir() if p.name.startswith(".") and p.name != OWNER_FILE]
    assert study.get_trials()[2].user_attrs["mixture"] == {"medical-icd10": 0.0, "medical-icd10-chapters": 1.0}


@pytest.mark.slow
def test_experts_of_the_top_layers_merge_on_the_cached_trunk(tiny_model, tiny_recipe_file, tmp_path, monkeypatch):
    from soupkit.search.study import default_storage, open_study
    from soupkit.study_record import TrialRecord

    monkeypatch.setenv("SOUPKIT_HOME", str(tmp_path / "home"))
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    made = CliRunner().invoke(main, ["experts", "--recipe", str(recipe), "--out", str(out), "--train", "top:1",
                                     "--general-share", "0", "--quiet"])
    assert made.exit_code == 0, made.output
    assert "expert bank 'share0-3steps-top:1'" in made.output
    searched = CliRunner().invoke(main, ["search", "--recipe", str(recipe), "--out", str(out), "--by-merging",
                                         "--quiet"])
    assert searched.exit_code == 0, searched.output
    assert "proposals are scored on the cached trunk" in searched.output
    assert any((tmp_path / "home" / "trunk-cache").rglob("*"))
    done = [TrialRecord.of(t) for t in open_study(default_storage(out), "tiny", None, ["maximize"]).get_trials()]
    assert [t.state for t in done] == ["COMPLETE", "COMPLETE"] and all(t.scores for t in done)
