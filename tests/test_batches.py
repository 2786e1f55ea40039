"""The batch schedule: exact step shares, one family per batch, no group twice, seeded."""

from __future__ import annotations

from soupkit.data.family import TaskFamily, TrainExample
from soupkit.train.batches import plan_batches, steps_per_family


def family(name: str, n: int, groups: int) -> TaskFamily:
    examples = [TrainExample(f"{name} q{i}", f"{name} d{i % groups}", group=f"g{i % groups}") for i in range(n)]
    return TaskFamily(name, "retrieval", "test", examples, None)


def test_steps_are_shared_by_largest_remainder():
    assert steps_per_family({"a": 0.5, "b": 0.3, "c": 0.2}, 10) == {"a": 5, "b": 3, "c": 2}
    assert steps_per_family({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert steps_per_family({"a": 0.95, "b": 0.05}, 4) == {"a": 4, "b": 0}
    assert sum(steps_per_family({"a": 0.123, "b": 0.456, "c": 0.421}, 37).values()) == 37


def test_batches_follow_the_mixture_and_avoid_group_collisions():
    fams = {"a": family("a", 50, 10), "b": family("b", 50, 50)}
    batches = list(plan_batches(fams, {"a": 0.75, "b": 0.25}, steps=8, batch_size=8, seed=3))
    assert [b.family for b in batches].count("a") == 6
    for batch in batches:
        assert all(e.anchor.startswith(batch.family) for e in batch.examples)
        groups = [e.group for e in batch.examples]
        assert len(groups) == len(set(groups))
    # family 'a' has only 10 groups: a batch of 8 still finds 8 distinct ones
    assert all(len(b.examples) == 8 for b in batches)


def test_same_seed_same_schedule_other_seed_other_schedule():
    fams = {"a": family("a", 40, 40), "b": family("b", 40, 40)}
    one = list(plan_batches(fams, {"a": 1, "b": 1}, 6, 4, seed=0))
    two = list(plan_batches(fams, {"a": 1, "b": 1}, 6, 4, seed=0))
    other = list(plan_batches(fams, {"a": 1, "b": 1}, 6, 4, seed=1))
    assert one == two
    assert one != other


def test_zero_weight_family_gets_no_batches():
    fams = {"a": family("a", 10, 10), "b": family("b", 10, 10)}
    assert {b.family for b in plan_batches(fams, {"a": 1.0, "b": 0.0}, 5, 2, seed=0)} == {"a"}


def test_the_plan_is_lazy_memory_does_not_grow_with_steps():
    """A plan of ten million steps starts at once and holds one counter per family (it used to be
    built up front: `--steps 99999999999999999999` grew to ~20 GB until the kernel killed it)."""
    import itertools
    import tracemalloc

    fams = {"a": family("a", 40, 40), "b": family("b", 40, 40)}

    def peak(steps: int) -> int:
        tracemalloc.start()
        for _ in itertools.islice(plan_batches(fams, {"a": 1, "b": 3}, steps, 4, seed=0), 200):
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, huge = peak(200), peak(10**7)
    assert huge < small + 64 * 1024, (small, huge)
    first = list(itertools.islice(plan_batches(fams, {"a": 1, "b": 3}, 10**7, 4, seed=0), 1000))
    assert abs(sum(b.family == "b" for b in first) / 1000 - 0.75) < 0.06


def test_every_step_of_the_plan_is_used_exactly():
    fams = {"a": family("a", 10, 10), "b": family("b", 10, 10), "c": family("c", 10, 10)}
    batches = list(plan_batches(fams, {"a": 0.5, "b": 0.3, "c": 0.2}, 37, 2, seed=4))
    counts = {name: sum(b.family == name for b in batches) for name in fams}
    assert counts == steps_per_family({"a": 0.5, "b": 0.3, "c": 0.2}, 37)
