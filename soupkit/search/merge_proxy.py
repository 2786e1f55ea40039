"""Search by merging: score a mixture without training it, as the linear merge of one expert per
family with the mixture's weights (DeMix, arXiv 2602.00747; docs/recipes.md, "Search by merging").

`soupkit experts` (soupkit.soups.experts) trains the experts into the expert study beside the
search's (`<search study>.experts`) and records each bank (one general share, finetune setting and
base) by name. Here a bank is read back (`load_expert_bank`), held in memory once
(soupkit.merge.in_memory), and each proposal of a search by merging is merged into one model and
scored on the probes (`MergeProxy.score`). Experts trained with `train: top:<k>` share their bottom
with the base, so their merges score on the cached trunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from soupkit.errors import SoupkitError
from soupkit.study_record import TrialRecord, expert_banks, merge_proxy_of

SUFFIX = ".experts"
STAGE = "experts"


def expert_study_name(search_study_name: str) -> str:
    return search_study_name + SUFFIX


@dataclass(frozen=True)
class ExpertBank:
    """A recorded bank whose experts are all trained: one model folder per family, in family order."""

    name: str
    families: list[str]
    folders: list[Path]
    trials: list[int]
    base: str
    train: str  # finetune.train of the experts: `all` or `top:<k>`
    general_share: float
    steps: int


def find_expert_study(storage, search_name: str, where: str):
    import optuna

    try:
        return optuna.load_study(study_name=expert_study_name(search_name), storage=storage)
    except KeyError:
        raise SoupkitError(f"{where} has no experts for study '{search_name}'; make them first with "
                           "`soupkit experts --out RUN`") from None


def load_expert_bank(storage, search_name: str, families: list[str], name: str | None = None,
                     where: str = "the run") -> ExpertBank:
    """The bank `name` (the one recorded last by default) of the expert study of `search_name`; one
    line when it is missing, covers other families or has an expert not trained (or deleted)."""
    study = find_expert_study(storage, search_name, where)
    banks = expert_banks(study)
    if not banks:
        raise SoupkitError(f"{where} records no expert bank; run `soupkit experts --out RUN` first")
    name = name or list(banks)[-1]
    if name not in banks:
        raise SoupkitError(f"no expert bank named '{name}' in {where} (recorded: {', '.join(banks)})")
    bank, settings = banks[name], banks[name]["settings"]
    experts = bank.get("experts") or {}
    if sorted(experts) != sorted(families):
        raise SoupkitError(f"expert bank '{name}' has experts for {', '.join(sorted(experts))}, but the recipe "
                           f"trains on {', '.join(sorted(families))}; make a bank for this recipe")
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    folders, trials = [], []
    for family in families:
        number = experts[family]
        done = TrialRecord.of(by_number[number]) if number in by_number else None
        if done is None or not done.has_model():
            raise SoupkitError(f"expert bank '{name}': the expert of {family} is not trained (or its folder is "
                               "gone); run `soupkit experts` again to finish it")
        folders.append(done.checkpoint)
        trials.append(number)
    finetune = settings["finetune"]
    return ExpertBank(name, list(families), folders, trials, settings["base"], finetune.get("train", "all"),
                      float(settings["general_share"]), int(finetune["steps"]))


def check_search_mode(storage, search_name: str, bank: str | None) -> None:
    """A study is searched one way: by training (bank None) or by merging one bank. Resuming it the
    other way would mix proxies and trained models in one ranking: refused in one line."""
    import optuna

    try:
        study = optuna.load_study(study_name=search_name, storage=storage)
    except KeyError:
        return
    if not study.get_trials(deepcopy=False):
        return
    recorded = merge_proxy_of(study)
    if recorded == bank:
        return
    if recorded is None:
        raise SoupkitError(f"study '{search_name}' holds trained trials; a search by merging needs a study of its "
                           "own: give it another --out (its experts made there with `soupkit experts`)")
    if bank is None:
        raise SoupkitError(f"study '{search_name}' is a search by merging (expert bank '{recorded}'); resume it "
                           "with --by-merging, or search by training in another --out")
    raise SoupkitError(f"study '{search_name}' merges expert bank '{recorded}', not '{bank}'; resume it with "
                       f"--expert-bank {recorded}, or search the other bank in another --out")


class MergeProxy:
    """An expert bank in memory: `score(weights)` merges the experts with a mixture's weights into
    one model and scores it, without training or writing anything."""

    def __init__(self, bank: ExpertBank, device: str | None = None, log: Callable[[str], None] = print):
        from soupkit.merge.in_memory import InMemoryMerge

        self.bank = bank
        start = time.perf_counter()
        self.merger = InMemoryMerge(bank.folders, device)
        log(f"expert bank '{bank.name}': {len(bank.folders)} experts loaded in {time.perf_counter() - start:.1f}s")
        self.trunk = join_bank_trunk(self.merger, bank.train, bank.base, log)

    def merge(self, weights: Mapping[str, float]):
        """The merged model (the same object every time: the next merge overwrites it)."""
        missing = [f for f in self.bank.families if f not in weights]
        if missing:
            raise SoupkitError(f"merge proxy: no weight for the expert of {', '.join(missing)}")
        return self.merger.merge([float(weights[f]) for f in self.bank.families])

    def score(self, weights: Mapping[str, float], probes, settings) -> tuple[dict[str, float], dict[str, float]]:
        """(scores, seconds {"merge", "probe"}) of the merge with `weights` over the families."""
        from soupkit.probes.score import score_probes

        start = time.perf_counter()
        model = self.merge(weights)
        merged = time.perf_counter()
        scores = score_probes(model, probes, settings)
        return scores, {"merge": round(merged - start, 3), "probe": round(time.perf_counter() - merged, 2)}


def join_bank_trunk(merger, train: str, base: str, log: Callable[[str], None] = print) -> bool:
    """Score merges on the cached trunk when every member holds the same frozen bottom (top:<k>
    checkpoints of one base): no merge ever writes it, so its cached output stays right. The bank
    itself says how many top layers differ, so a bank searched with `--train top:<k>` over a recipe
    that trains `all` joins too; the recipe's own `top:<k>` is tried first. True when joined."""
    from soupkit.config import top_layers
    from soupkit.models.layers import backbone_of
    from soupkit.models.trunk import join_trunk_cache

    try:
        backbone = backbone_of(merger.model)
    except SoupkitError as error:
        log(f"proposals are scored without the trunk cache ({error})")
        return False
    varying = merger.varying_names
    shared = next((k for k in range(1, backbone.layer_count + 1)
                   if not set(backbone.bottom_names(merger.model, k)) & varying), None)
    wanted = top_layers(train)
    if wanted is not None and (shared is None or wanted < shared):
        log(f"the bank's models differ below their top {wanted} layers: proposals are scored without the trunk cache")
        return False
    if shared is None or wanted is None and shared == backbone.layer_count:
        log("the bank's models differ in every layer: proposals are scored without the trunk cache")
        return False
    for k in dict.fromkeys(k for k in (wanted, shared) if k is not None):
        if join_trunk_cache(merger.model, f"top:{k}", base) is not None:
            log(f"proposals are scored on the cached trunk (the bank shares its bottom; top {k} layers merged)")
            return True
    log(f"proposals are scored without the trunk cache: no cache of this bank's bottom yet for top:{wanted or shared} "
        f"(a search or finetune of {base or 'its base'} with train top:{wanted or shared} makes one)")
    return False
