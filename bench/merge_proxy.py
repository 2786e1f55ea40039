"""Does the merge of experts rank mixtures as training them does? The rank check of search by merging.

    python bench/merge_proxy.py --experts runs/experts-default --trials bench/tables/default-minilm/gp-search.csv \
        --banks share0-24steps,share0.5-24steps --limit 40 --save bench/tables/proxy

For every real trial of a trained search (`--trials`: its run folder, or the CSV bench/export_trials.py
wrote from it), the mixture is scored as a search by merging scores it: the experts of a bank
(`soupkit experts`, in the run folder `--experts`) merged in memory with the mixture's weights, scored
on the same probes (selection halves). Printed per bank, as Markdown: Spearman(proxy objective, real
objective) over the trials, and the same per probe (which probes the proxy ranks well and which not),
with the seconds of one proxy (merge, probe pass). `--save DIR` writes each bank's proxy scores as
`DIR-<bank>.csv` (number, objective, every probe), so the correlations can be recomputed without the
experts. `--reference` (another table of the same mixtures, e.g. finetuned longer) adds the baseline a
proxy must beat: Spearman between the `--trials` objective and the reference's, over the mixtures both hold.

`--limit N` takes the first N trials (the table's order: random draws first, a spread over the simplex).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from surrogates import read_trials_csv, study_source


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) if len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")


def trials_of(paths: str):
    """The completed trials of comma-separated run folders or exported CSVs of one recipe, pooled."""
    import dataclasses

    sources = [read_trials_csv(Path(p)) if p.endswith(".csv") else study_source(Path(p)) for p in paths.split(",")]
    if any(s.families != sources[0].families or s.base_scores != sources[0].base_scores for s in sources):
        raise SystemExit(f"error: {paths}: not the same recipe and base model")
    return dataclasses.replace(sources[0], rows=[r for s in sources for r in s.rows],
                               kinds=[k for s in sources for k in s.kinds])


def reference_rows(paths: str) -> list:
    """Other trainings of the same mixtures: a CSV table's trials; for a run folder, the ingredients
    beside its search (`soupkit ingredients --select top --k N --pool N --steps 96`: its N best
    mixtures finetuned longer), not its own trials."""
    import optuna

    from soupkit.search.study import close_storage, default_storage, open_storage
    from soupkit.study_record import StudyRecord, TrialRecord

    rows = []
    for path in paths.split(","):
        if path.endswith(".csv"):
            rows += trials_of(path).rows
            continue
        storage = open_storage(default_storage(Path(path)))
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            if StudyRecord.of(study).stage == "ingredients":
                rows += [r for r in map(TrialRecord.of, study.get_trials(deepcopy=False))
                         if r.state == "COMPLETE" and r.mixture and r.objective is not None]
        close_storage(storage)
    return rows


def mixture_key(mixture: dict[str, float]) -> tuple:
    total = sum(mixture.values())
    return tuple(sorted((f, round(w / total, 4)) for f, w in mixture.items() if w > 0))


def proxy_scores(experts: Path, bank_name: str, source, limit: int | None, log=print) -> list[dict]:
    """{number, objective, scores, merge, probe} of every trial's mixture merged from the bank."""
    import optuna

    from soupkit.base_model import pick_device, use_bf16
    from soupkit.data.load import load_recipe_families
    from soupkit.probes.score import ProbeSettings, objective_value
    from soupkit.search.merge_proxy import (
        MergeProxy,
        find_expert_study,
        load_expert_bank,
    )
    from soupkit.search.study import default_storage, open_storage
    from soupkit.study_record import StudyRecord

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(default_storage(experts))
    recipe = StudyRecord.of(find_expert_study(storage, source.recipe, str(experts))).recipe()
    if recipe.family_names() != source.families:
        raise SystemExit(f"error: the experts in {experts} are for families {recipe.family_names()}, "
                         f"the trials for {source.families}")
    bank = load_expert_bank(storage, recipe.name, recipe.family_names(), bank_name, str(experts))
    # every probe's selection half, as a search of this soupkit scores it (the trials' study must be one too)
    probes = load_recipe_families(recipe, log=lambda _: None)[1]
    device = pick_device()
    settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))
    proxy = MergeProxy(bank, device, log)
    rows = []
    for i, trial in enumerate(source.rows[:limit]):
        start = time.perf_counter()
        scores, seconds = proxy.score(trial.mixture, probes, settings)
        rows.append({"number": trial.number, "objective": objective_value(scores, recipe.objective.weights),
                     "scores": scores, **seconds})
        log(f"  {bank_name}: trial {trial.number} ({i + 1}/{len(source.rows[:limit])}) proxy "
            f"{rows[-1]['objective']:.4f} real {trial.objective:.4f}  {time.perf_counter() - start:.1f}s")
    return rows


def report(bank: str, source, rows: list[dict]) -> list[str]:
    real = source.rows[:len(rows)]  # rows are the proxies of these trials, in order
    proxy_obj = [r["objective"] for r in rows]
    real_obj = [t.objective for t in real]
    lines = [f"| {bank} | all (objective) | {len(rows)} | {spearman(proxy_obj, real_obj):.2f} |"]
    for probe in source.base_scores:
        lines.append(f"| {bank} | {probe} | {len(rows)} | "
                     f"{spearman([r['scores'][probe] for r in rows], [t.scores[probe] for t in real]):.2f} |")
    pick = int(np.argmax(proxy_obj))  # what a search by merging would confirm: its best proxy
    rank = 1 + sum(value > real_obj[pick] for value in real_obj)
    lines.append(f"| {bank} | the proxy's top pick: trial {real[pick].number}, real objective {real_obj[pick]:.4f}, "
                 f"rank {rank} of the real trials | {len(rows)} | - |")
    merge = np.median([r["merge"] for r in rows])
    probe = np.median([r["probe"] for r in rows])
    lines.append(f"| {bank} | seconds per proxy (median merge + probe) | {len(rows)} | {merge:.2f} + {probe:.1f} |")
    return lines


def save(path: Path, rows: list[dict]) -> None:
    probes = list(rows[0]["scores"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["number", "objective", "merge_seconds", "probe_seconds", *(f"score:{p}" for p in probes)])
        for r in rows:
            out.writerow([r["number"], round(r["objective"], 6), r["merge"], r["probe"],
                          *(round(r["scores"][p], 6) for p in probes)])


def load_saved(path: Path) -> list[dict]:
    """The rows `save` wrote: a bank's proxies read back without the experts."""
    with open(path, newline="") as handle:
        return [{"number": int(r["number"]), "objective": float(r["objective"]), "merge": float(r["merge_seconds"]),
                 "probe": float(r["probe_seconds"]),
                 "scores": {k.removeprefix("score:"): float(v) for k, v in r.items() if k.startswith("score:")}}
                for r in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", type=Path, required=True, help="run folder holding the expert banks")
    parser.add_argument("--trials", required=True,
                        help="run folders of real trials, or their exported CSVs (bench/export_trials.py), comma-separated")
    parser.add_argument("--banks", required=True, help="comma-separated expert bank names (soupkit experts --name)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N trials")
    parser.add_argument("--save", type=Path, default=None, help="write DIR-<bank>.csv with each bank's proxy scores")
    parser.add_argument("--proxies", type=Path, default=None,
                        help="read each bank's proxies from DIR-<bank>.csv (an earlier --save) instead of merging")
    parser.add_argument("--reference", default=None,
                        help="the same mixtures trained otherwise (a table, or a run whose ingredients trained its "
                             "trials' mixtures longer): the baseline correlation a proxy must beat")
    args = parser.parse_args()
    if args.proxies is None and not (args.experts / "study.db").is_file():
        raise SystemExit(f"error: --experts {args.experts}: no study.db (make the experts with `soupkit experts --out`)")
    source = trials_of(args.trials)
    objectives = [t.objective for t in source.rows]
    print(f"real objectives of {len(objectives)} trials: {min(objectives):.4f}-{max(objectives):.4f}, "
          f"sd {np.std(objectives, ddof=1):.4f} between mixtures\n")
    lines = ["| bank | probe | trials | Spearman (proxy vs real) |", "|---|---|---|---|"]
    proxies = {}
    for bank in args.banks.split(","):
        if args.proxies:
            rows = load_saved(args.proxies.with_name(f"{args.proxies.name}-{bank}.csv"))
            source = dataclasses.replace(source, rows=[t for t in source.rows if t.number in {r["number"] for r in rows}])
        else:
            rows = proxy_scores(args.experts, bank, source, args.limit, log=lambda s: print(s, file=sys.stderr))
        if args.save:
            save(args.save.with_name(f"{args.save.name}-{bank}.csv"), rows)
        proxies[bank] = {r["number"]: r for r in rows}
        lines += report(bank, source, rows)
    if args.reference:
        other = {mixture_key(t.mixture): t for t in reference_rows(args.reference)}
        pairs = [(t, other[mixture_key(t.mixture)]) for t in source.rows if mixture_key(t.mixture) in other]
        longer = [b.objective for _, b in pairs]
        lines.append(f"| reference {args.reference}: the trials vs the same mixtures trained otherwise | all (objective) | "
                     f"{len(pairs)} | {spearman([a.objective for a, _ in pairs], longer):.2f} |")
        for bank, rows in proxies.items():  # the proxy on the same mixtures, against both trainings
            proxy = [rows[a.number]["objective"] if a.number in rows else float("nan") for a, _ in pairs]
            lines.append(f"| {bank} on the same mixtures: vs the trials / vs the reference | all (objective) | {len(pairs)} | "
                         f"{spearman(proxy, [a.objective for a, _ in pairs]):.2f} / {spearman(proxy, longer):.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
