"""The samplers a recipe may name, beyond the registry's bookkeeping: BoTorch's acquisitions
through optuna-integration (issue 17), on the tiny model and as one line when it is not installed."""

from __future__ import annotations

import sys

import pytest

from soupkit.config import Recipe
from soupkit.errors import SoupkitError
from soupkit.search.samplers import check_sampler, make_sampler
from soupkit.search.space import PARAM_PREFIX


# qLogNEI; qLogNEHVI on (domain, general): a 4-trial search either way
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["weighted", "pareto"])
def test_botorch_proposes_mixtures_after_its_startup_trials(load_study, search, tiny_recipe, tiny_model, tmp_path,
                                                            mode):
    recipe = tiny_recipe(tiny_model)
    objective = {"mode": mode, "domain": ["medical-icd10"]} if mode == "pareto" else {}
    recipe = Recipe.model_validate({**recipe.model_dump(), "objective": objective,
                                    "search": {**recipe.search.model_dump(), "sampler": "botorch"}})
    search(recipe, tmp_path / "run", budget=4)  # the seed mixture, one random draw, two BoTorch proposals

    trials = load_study(tmp_path / "run", ("maximize",) * (2 if mode == "pareto" else 1)).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    mixtures = [t.user_attrs["mixture"] for t in trials]
    for mixture in mixtures:
        assert set(mixture) == {"medical-icd10", "medical-icd10-chapters"}
        assert sum(mixture.values()) == pytest.approx(1.0, abs=1e-6)
    assert len({tuple(sorted(m.items())) for m in mixtures}) == 4
    assert all(set(t.params) == {f"{PARAM_PREFIX}medical-icd10", f"{PARAM_PREFIX}medical-icd10-chapters"}
               for t in trials)


def test_botorch_sampler_considers_other_workers_running_trials():
    sampler = make_sampler("botorch", 0, 3).inner  # inside the wrapper that shows it pruned trials
    assert type(sampler).__name__ == "BoTorchSampler"
    assert sampler._consider_running_trials is True
    assert type(sampler._candidates_func).__name__ == "_WithStoppedTrialNoise"  # not the default's plain qEI


def test_the_noisy_acquisition_looks_where_the_model_believes_not_at_a_lucky_draw():
    import torch  # a hard dependency: a broken install fails here, it does not skip
    from soupkit.search.samplers import _noisy_acquisition

    torch.manual_seed(0)
    x = torch.linspace(0, 1, 15, dtype=torch.float64).unsqueeze(-1)
    y = -((x - 0.3) ** 2) + 0.01 * torch.randn_like(x)
    y[-1] = y.max() + 0.03  # one lucky draw far from the optimum: plain EI would search around it
    bounds = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    candidate = _noisy_acquisition(x, y, None, bounds, None)
    assert candidate.shape == (1, 1) and abs(float(candidate) - 0.3) < 0.2


def test_a_missing_botorch_is_one_line_that_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "botorch", None)  # `import botorch` raises ImportError
    with pytest.raises(SoupkitError, match=r"sampler 'botorch' needs botorch, .*pip install botorch optuna-integration"):
        check_sampler("botorch")
    check_sampler("gp")  # the others need nothing more


def test_search_refuses_a_missing_botorch_before_writing(monkeypatch, one_line_error, tiny_recipe_file, tiny_model,
                                                          search_command, tmp_path):
    monkeypatch.setitem(sys.modules, "botorch", None)
    recipe = tiny_recipe_file(tiny_model, tmp_path / "tiny.yaml")
    one_line_error(search_command(recipe, tmp_path / "run", "--sampler", "botorch"),
                   "sampler 'botorch' needs botorch", "pip install botorch optuna-integration", workdir=tmp_path)
