"""What one proposal of `--sampler botorch` costs: each acquisition optuna-integration offers for
soupkit's cases, timed on the same trials, as a ratio to qLogEI (one objective).

The trials are points of the default recipe's search space (one coordinate per family) with a
smooth objective plus noise; the cost is fitting the GP and optimising the acquisition, which
depends on the number of trials and coordinates, not on the values.

    python bench/acquisition_cost.py --trials 10,30 --families 7
"""

from __future__ import annotations

import argparse
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="10,30", help="completed trials the acquisition sees")
    parser.add_argument("--families", type=int, default=7, help="search coordinates (the default recipe: 7)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch
    from optuna_integration.botorch import (
        qehvi_candidates_func,
        qlogei_candidates_func,
        qnehvi_candidates_func,
    )

    from soupkit.search.samplers import _noisy_acquisition

    warnings.simplefilter("ignore")
    acquisitions = [("qLogEI (one objective)", qlogei_candidates_func, 1),
                    ("qLogNEI (one objective, soupkit's)", _noisy_acquisition, 1),
                    ("qLogEHVI (two objectives)", qehvi_candidates_func, 2),
                    ("qLogNEHVI (two objectives, soupkit's)", qnehvi_candidates_func, 2)]
    bounds = torch.stack([torch.zeros(args.families), torch.ones(args.families)]).double()
    print(f"torch threads {torch.get_num_threads()}, {args.families} coordinates, best of {args.repeats}\n")
    print("| acquisition | trials | seconds per proposal | ratio to qLogEI |")
    print("|---|---|---|---|")
    for n in (int(k) for k in args.trials.split(",")):
        generator = torch.Generator().manual_seed(n)
        x = torch.rand(n, args.families, generator=generator, dtype=torch.float64)
        noise = 0.01 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        y = torch.stack([x[:, :3].sum(1) - x[:, 0] ** 2, x[:, 3:].sum(1) - x[:, 1]], dim=1) + noise
        baseline = None
        for name, acquisition, objectives in acquisitions:
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                acquisition(x, y[:, :objectives], None, bounds, None)
                times.append(time.perf_counter() - start)
            best = min(times)
            baseline = baseline or best
            print(f"| {name} | {n} | {best:.1f} | {best / baseline:.1f} |", flush=True)


if __name__ == "__main__":
    main()
