"""Held-out probes split into a selection half (search, soups) and a test half (the report only)."""

from __future__ import annotations

import pytest

from soupkit.config import Recipe
from soupkit.data.family import (
    ClassificationProbeData,
    ClusteringProbeData,
    RetrievalProbeData,
    SimilarityProbeData,
)
from soupkit.data.halves import split_probe
from soupkit.data.load import load_families, load_held_out_test_halves, load_recipe_families, probe_texts
from soupkit.errors import SoupkitError


def _retrieval() -> RetrievalProbeData:
    # query i finds doc i; doc 10 is relevant to queries 0 and 1; docs 11-15 are distractors
    queries = [f"query {i}" for i in range(10)]
    corpus = [f"doc {i}" for i in range(16)]
    relevant = [{i} for i in range(10)]
    relevant[0], relevant[1] = {0, 10}, {1, 10}
    return RetrievalProbeData(queries, corpus, relevant)


def _relevant_texts(probe: RetrievalProbeData) -> dict[str, set[str]]:
    return {q: {probe.corpus[d] for d in rel} for q, rel in zip(probe.queries, probe.relevant)}


def test_retrieval_halves_partition_the_queries_and_keep_each_querys_documents():
    whole = _retrieval()
    selection, test = split_probe(whole, seed=0)
    assert set(selection.queries).isdisjoint(test.queries)
    assert sorted(selection.queries + test.queries) == sorted(whole.queries)
    assert (len(selection.queries), len(test.queries)) == (5, 5)
    truth = _relevant_texts(whole)
    for half in (selection, test):
        assert _relevant_texts(half) == {q: truth[q] for q in half.queries}
    distractors = {f"doc {i}" for i in range(11, 16)}
    assert (set(selection.corpus) & distractors).isdisjoint(set(test.corpus) & distractors)
    assert (set(selection.corpus) | set(test.corpus)) >= distractors
    # fixed by the seed, not by chance; another seed draws other halves
    assert split_probe(whole, seed=0) == (selection, test)
    assert split_probe(whole, seed=1)[0].queries != selection.queries


def test_labelled_and_pair_probes_are_halved_item_by_item():
    texts = [f"text {i}" for i in range(9)]
    labels = [str(i % 3) for i in range(9)]
    clf = ClassificationProbeData(texts, labels, [t + "!" for t in texts], labels)
    sel, test = split_probe(clf, 0)
    assert (len(sel.train_texts), len(test.train_texts), len(sel.test_texts), len(test.test_texts)) == (5, 4, 5, 4)
    assert set(sel.train_texts).isdisjoint(test.train_texts) and set(sel.test_texts).isdisjoint(test.test_texts)
    for half in (sel, test):
        assert all(labels[texts.index(t)] == y for t, y in zip(half.train_texts, half.train_labels))
        assert all(labels[texts.index(t[:-1])] == y for t, y in zip(half.test_texts, half.test_labels))

    sel, test = split_probe(ClusteringProbeData(texts, labels), 0)
    assert sorted(sel.texts + test.texts) == sorted(texts)
    assert all(labels[texts.index(t)] == y for half in (sel, test) for t, y in zip(half.texts, half.labels))

    pairs = SimilarityProbeData(texts, [t + "?" for t in texts], [float(i) for i in range(9)])
    sel, test = split_probe(pairs, 0)
    assert sorted(sel.scores + test.scores) == pairs.scores
    assert all(r == l + "?" and s == float(texts.index(l)) for half in (sel, test)
               for l, r, s in zip(half.left, half.right, half.scores))


def test_search_and_soups_see_only_selection_halves_and_train_on_neither():
    recipe = Recipe.model_validate({
        "name": "halves",
        "families": ["medical-abbreviations"],
        "probe_only": ["legal-wordnet"],
        "probes": {"probe_size": 30, "probe_corpus": 60, "max_train": 500},
    })
    families, probes = load_recipe_families(recipe)
    selection = probes["legal-wordnet"]
    assert load_families(recipe, probe_only=True)["legal-wordnet"].probe == selection.probe
    test = load_held_out_test_halves(recipe)["legal-wordnet"]
    assert selection.name == test.name == "legal-wordnet"  # both halves keep the family's name
    assert set(selection.probe.queries).isdisjoint(test.probe.queries)
    assert (len(selection.probe.queries), len(test.probe.queries)) == (15, 15)  # 30 queries
    assert not selection.train and not test.train
    both = probe_texts(selection) | probe_texts(test)
    for e in families["medical-abbreviations"].train:
        assert e.anchor not in both and e.positive not in both


def test_a_study_scored_on_whole_held_out_probes_is_refused():
    import optuna

    from soupkit.search.study import check_held_out_halves

    recipe = Recipe.model_validate({"name": "r", "families": ["paraphrase"], "probe_only": ["legal-wordnet"]})
    fresh = optuna.create_study()
    check_held_out_halves(fresh, recipe, record=True)
    check_held_out_halves(fresh, recipe)  # marked: fine from now on
    old = optuna.create_study()
    old.enqueue_trial({"x": 1.0})
    with pytest.raises(SoupkitError, match="scored its held-out probes .legal-wordnet. whole"):
        check_held_out_halves(old, recipe, record=True)
