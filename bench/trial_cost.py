"""Where a trial's time goes, and soupkit's finetune speed against a plain sentence-transformers
trainer run with the same data, loss and settings, in this same process.

    python bench/trial_cost.py [--steps 20] [--repeats 2]

Prints: seconds for data loading, one finetune, one probe pass, and the sampler + storage cost of
suggesting trial 40 of a study; then examples/second of soupkit's loop vs the trainer as a ratio.
Run it with nothing else busy on the machine (NOTES.md: a second busy process slows torch 3-9x).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from soupkit.base_model import load_model, use_bf16
from soupkit.config import load_recipe
from soupkit.data.load import load_recipe_families
from soupkit.probes.score import ProbeSettings, score_probes
from soupkit.search.samplers import make_sampler
from soupkit.search.space import suggest_mixture
from soupkit.search.study import open_study
from soupkit.train.batches import plan_batches
from soupkit.train.finetune import build_loss, finetune_on_mixture

FAMILY = "medical-icd10"  # has hard negatives, so both runs train on three columns


def time_soupkit(recipe, families, bf16: bool, out: Path) -> float:
    model = load_model(recipe.base, "cpu")
    result = finetune_on_mixture(model, families, {FAMILY: 1.0}, recipe.finetune, out, recipe.seed, bf16)
    return result.examples_per_second


def time_trainer(recipe, families, bf16: bool, out: Path) -> float:
    """The same batches, loss and optimiser settings through SentenceTransformerTrainer."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    spec = recipe.finetune
    batches = list(plan_batches(families, {FAMILY: 1.0}, spec.steps, spec.batch_size, recipe.seed))
    examples = [e for b in batches for e in b.examples]
    columns = {"anchor": [e.anchor for e in examples], "positive": [e.positive for e in examples]}
    if all(e.negative for e in examples):
        columns["negative"] = [e.negative for e in examples]
    model = load_model(recipe.base, "cpu")
    model.max_seq_length = spec.max_seq_length
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=spec.batch_size, max_steps=spec.steps,
        learning_rate=spec.learning_rate, warmup_steps=int(round(spec.warmup_ratio * spec.steps)),
        weight_decay=spec.weight_decay, max_grad_norm=1.0, bf16=bf16, use_cpu=True, seed=recipe.seed,
        report_to=[], save_strategy="no", logging_steps=10_000, disable_tqdm=True, dataloader_drop_last=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                         loss=build_loss(model, spec.loss))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.save(str(out / "model"))
    return len(examples) / seconds


def sampler_seconds_at(n_trials: int, families: list[str], sampler: str, db: Path) -> float:
    """Seconds for ask+tell of trial `n_trials` with the GP sampler on an SQLite study."""
    import random

    study = open_study(f"sqlite:///{db}", "bench", make_sampler(sampler, 0, 10), ["maximize"])
    rng = random.Random(0)
    for _ in range(n_trials - 1):
        trial = study.ask()
        suggest_mixture(trial, families)
        study.tell(trial, rng.random())
    start = time.perf_counter()
    trial = study.ask()
    suggest_mixture(trial, families)
    study.tell(trial, 0.5)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    recipe = recipe.model_copy(update={"finetune": recipe.finetune.model_copy(update={"steps": args.steps})})
    bf16 = use_bf16("cpu", recipe.finetune.bf16)
    tmp = Path(tempfile.mkdtemp(prefix="soupkit-bench-"))

    start = time.perf_counter()
    families, _ = load_recipe_families(recipe)
    data_s = time.perf_counter() - start

    soupkit_eps, trainer_eps = [], []
    for i in range(args.repeats):  # alternate so drift in machine speed hits both alike
        soupkit_eps.append(time_soupkit(recipe, families, bf16, tmp / f"soupkit-{i}"))
        trainer_eps.append(time_trainer(recipe, families, bf16, tmp / f"trainer-{i}"))

    model = load_model(recipe.base, "cpu")
    weights = {name: 1.0 for name in families}
    start = time.perf_counter()
    result = finetune_on_mixture(model, families, weights, recipe.finetune, tmp / "mixture", recipe.seed, bf16)
    finetune_s = time.perf_counter() - start
    start = time.perf_counter()
    score_probes(model, families, ProbeSettings.from_recipe(recipe, bf16))
    probe_s = time.perf_counter() - start
    sampler_s = sampler_seconds_at(40, list(families), recipe.search.sampler, tmp / "bench.db")
    trial_s = finetune_s + probe_s + sampler_s

    print(f"recipe {recipe.name}: {args.steps} steps x batch {recipe.finetune.batch_size}, bf16={bf16}")
    print(f"data (all families, once per search) {data_s:7.2f} s")
    print(f"finetune (mixture of all families)   {finetune_s:7.2f} s  ({result.examples_per_second:.1f} examples/s)")
    print(f"probes (all families)                {probe_s:7.2f} s")
    print(f"sampler+storage at trial 40          {sampler_s:7.3f} s  = {100 * sampler_s / trial_s:.2f}% of a trial")
    ratio = statistics.median(soupkit_eps) / statistics.median(trainer_eps)
    print(f"finetune examples/s on {FAMILY}: soupkit {statistics.median(soupkit_eps):.1f} "
          f"vs SentenceTransformerTrainer {statistics.median(trainer_eps):.1f}  ratio {ratio:.2f}x (target >= 0.95x)")


if __name__ == "__main__":
    main()
