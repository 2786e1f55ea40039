"""Write a run's real trials as a small CSV table under bench/tables/: mixture weights, every
probe score, objective, seconds, milestones, recipe, base and train setting; no model weights.

    python bench/export_trials.py runs/sampler-table-2 runs/gp-search --out bench/tables/default-minilm

writes one `<run folder name>.csv` per run into the folder `--out`.

The table is what bench/samplers.py (`--table` with the CSVs, comma-separated) and the rank check
of search by merging (bench/merge_proxy.py `--trials ...csv`) read, so both run on a fresh machine
without re-training hundreds of trials. bench/surrogates.py reads a CSV as it reads a run folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from surrogates import read_trials_csv, study_source, write_trials_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of soupkit searches (their study.db)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSVs, e.g. bench/tables/default-minilm")
    parser.add_argument("--ingredients", default=None, metavar="SET",
                        help="export the ingredient set SET of each run (`soupkit ingredients --name`) instead of its "
                             "trials, as `<run>-<SET>.csv`")
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "study.db").is_file():
            raise SystemExit(f"error: {run}: no study.db (give the run folder of a soupkit search)")
    for run in args.runs:
        source = study_source(run, args.ingredients)
        if not source.rows:
            raise SystemExit(f"error: {run}: no completed trials to export")
        path = args.out / f"{run.resolve().name}{'-' + args.ingredients if args.ingredients else ''}.csv"
        write_trials_csv(source, path)
        back = read_trials_csv(path)
        assert len(back.rows) == len(source.rows) and back.families == source.families
        print(f"{run}: {len(source.rows)} trials of recipe '{source.recipe}' ({source.base}, train {source.train}, "
              f"{source.steps} steps) written to {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
