"""Search cost: does a search by merging reach a trained search's best objective, confirmed by a
real finetune, in a quarter of its seconds? The race of issue 30.

    soupkit search --train top:2 --budget 40 --out runs/trained-top2
    soupkit experts --out runs/merged-top2 --steps 24 --train top:2
    soupkit search --out runs/merged-top2 --by-merging --budget 40
    soupkit ingredients --out runs/merged-top2 --k 1 --steps 24 --select top --train top:2 --name confirm
    python bench/merge_race.py --trained runs/trained-top2 --merged runs/merged-top2 --set confirm

Both studies run on one machine, one process each, so their seconds compare. A trial's seconds are
its span in the study (start to completion: the sampler's proposal, the finetune or merge, the probe
pass; not the start-up every command pays once: loading data, the base's probe pass, loading
the bank); the merged side counts every expert of the bank its search merged, every proposal, and the
finetune of the confirmed mixture. Printed as Markdown: the trained search's best objective and
the seconds it took to first reach it and in all; the merged search's best proxy, the confirmed
objective of the mixture it chose, and its seconds; their ratio (goal: at most 0.25 of the trained
search's, with the confirmed objective at or above the trained best).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def seconds(trial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def completed(study, limit: int | None = None) -> list:
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return sorted(trials, key=lambda t: t.number)[:limit]


def race_to_best(trials) -> tuple[float, float, int, float]:
    """(best objective, seconds until a trial first reached it, that trial's number, all seconds)."""
    from soupkit.study_record import objective_of

    best, spent, at, at_number = float("-inf"), 0.0, 0.0, -1
    for trial in trials:
        spent += seconds(trial)
        value = objective_of(trial)
        if value > best:
            best, at, at_number = value, spent, trial.number
    return best, at, at_number, spent


def load(run: Path, suffix: str = ""):
    import optuna

    from soupkit.search.study import default_storage, open_storage, search_study_names

    if not (run / "study.db").is_file():
        raise SystemExit(f"error: {run}: no study.db (give the run folder of a soupkit search)")
    storage = open_storage(default_storage(run))
    names = search_study_names(storage)
    if len(names) != 1:
        raise SystemExit(f"error: {run}: expected one search study, found {names}")
    try:
        return optuna.load_study(study_name=names[0] + suffix, storage=storage)
    except KeyError:
        raise SystemExit(f"error: {run}: no study '{names[0] + suffix}' (run its experts / ingredients first)") from None


def main() -> None:
    import optuna

    from soupkit.search.merge_proxy import SUFFIX as EXPERTS
    from soupkit.soups.ingredient_study import SUFFIX as INGREDIENTS, load_set
    from soupkit.study_record import expert_banks, merge_proxy_of, objective_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trained", type=Path, required=True, help="run folder of a trained search")
    parser.add_argument("--merged", type=Path, required=True, help="run folder of experts + a search by merging")
    parser.add_argument("--set", default=None, help="the merged run's ingredient set that confirms (default: the last)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N trials of each search")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    trained = completed(load(args.trained), args.limit)
    best, to_best, best_number, total = race_to_best(trained)
    merged = load(args.merged)
    bank_name = merge_proxy_of(merged)
    if bank_name is None:
        raise SystemExit(f"error: {args.merged}: its search is not a search by merging")
    experts = load(args.merged, EXPERTS)
    bank = expert_banks(experts)[bank_name]
    by_number = {t.number: t for t in experts.get_trials(deepcopy=False)}
    numbers = [n for n in bank["experts"].values() if n is not None]  # {family: its expert's trial}
    expert_seconds = sum(seconds(by_number[n]) for n in numbers)
    proposals = completed(merged, args.limit)
    proxy_best, proxy_to_best, proxy_number, proposal_seconds = race_to_best(proposals)
    ingredients = load(args.merged, INGREDIENTS)
    chosen = load_set(ingredients, args.set)
    confirm = [t for t in ingredients.get_trials(deepcopy=False) if t.number in chosen.ingredients]
    confirmed = max((objective_of(t) for t in confirm if t.state.name == "COMPLETE"), default=float("nan"))
    confirm_seconds = sum(seconds(t) for t in confirm)
    merged_total = expert_seconds + proposal_seconds + confirm_seconds

    print("| search | trials | seconds | best objective | reached after |")
    print("|---|---|---|---|---|")
    print(f"| trained (`{args.trained.name}`) | {len(trained)} | {total:.0f} | "
          f"{best:.4f} (trial {best_number}) | {to_best:.0f} s |")
    print(f"| by merging (`{args.merged.name}`, bank {bank_name}): {len(numbers)} experts | - | "
          f"{expert_seconds:.0f} | - | - |")
    print(f"| by merging: proposals | {len(proposals)} | {proposal_seconds:.0f} | {proxy_best:.4f} proxy "
          f"(trial {proxy_number}) | {expert_seconds + proxy_to_best:.0f} s with the experts |")
    print(f"| by merging: confirmed by a real finetune (set `{chosen.name}`) | {len(confirm)} | {confirm_seconds:.0f} | "
          f"{confirmed:.4f} | - |")
    print()
    print(f"by merging, experts + proposals + confirmation: {merged_total:.0f} s = "
          f"**{merged_total / total:.2f}x** the trained search's {total:.0f} s "
          f"({merged_total / to_best:.2f}x its {to_best:.0f} s to its best); "
          f"confirmed {confirmed:.4f} against the trained best {best:.4f} ({100 * (confirmed - best):+.2f} points)")


if __name__ == "__main__":
    main()
