"""Retrieval splits built of whole neighbourhoods: each answer competes with its near misses."""

from __future__ import annotations

from soupkit.data.split import MAX_NEIGHBOURHOOD, neighbourhood_order, split_retrieval

# 40 chapters of 10 verses, and one "chapter" far larger than a probe should take from one place
CHAPTERS = {f"verse {c}.{v}": f"chapter {c}" for c in range(40) for v in range(10)}
CHAPTERS |= {f"verse big.{v:03d}": "chapter big" for v in range(100)}
PAIRS = [(f"query for {doc}", doc) for doc in sorted(CHAPTERS)]


def test_neighbourhoods_stay_together_and_big_ones_are_cut():
    order = neighbourhood_order(sorted(CHAPTERS), CHAPTERS, seed=0)
    assert sorted(order) == sorted(CHAPTERS)
    runs = [[order[0]]]
    for doc in order[1:]:
        same = CHAPTERS[doc] == CHAPTERS[runs[-1][-1]] and len(runs[-1]) < MAX_NEIGHBOURHOOD
        runs[-1].append(doc) if same else runs.append([doc])
    small = [run for run in runs if CHAPTERS[run[0]] != "chapter big"]
    assert len(small) == 40 and all(len(run) == 10 for run in small)  # each chapter is one run
    big = [len(run) for run in runs if CHAPTERS[run[0]] == "chapter big"]
    assert sorted(big) == [4, 24, 24, 24, 24]  # cut into runs of at most MAX_NEIGHBOURHOOD
    assert neighbourhood_order(sorted(CHAPTERS, reverse=True), CHAPTERS, seed=0) == order  # input order is irrelevant
    assert neighbourhood_order(sorted(CHAPTERS), CHAPTERS, seed=1) != order


def test_a_neighbourhood_probe_takes_whole_chapters_and_trains_on_none_of_them():
    train, probe = split_retrieval(PAIRS, 0, probe_queries=30, probe_corpus=60, max_train=10**6,
                                   distractors="neighbours", neighbours=CHAPTERS)
    assert (len(probe.queries), len(probe.corpus)) == (30, 60)
    assert all(probe.queries[i] == f"query for {probe.corpus[i]}" and probe.relevant[i] == {i} for i in range(30))
    in_probe = {CHAPTERS[doc] for doc in probe.corpus}
    trained = {ex.positive for ex in train}
    assert not trained & set(probe.corpus) and not {ex.anchor for ex in train} & set(probe.queries)
    # every chapter in the probe is whole there, but for the last one the corpus size cut
    partial = [c for c in in_probe if any(CHAPTERS[d] == c for d in trained)]
    assert len(partial) <= 1
    assert len(in_probe) <= 60 // 10 + 1  # a few chapters, not sixty random verses
    # each answer competes with verses of its own chapter
    for i in range(30):
        chapter = CHAPTERS[probe.corpus[i]]
        assert sum(CHAPTERS[d] == chapter for d in probe.corpus) > 1


def test_without_neighbours_the_split_is_unchanged():
    train, probe = split_retrieval(PAIRS, 0, 30, 60, 10**6)
    again_train, again_probe = split_retrieval(PAIRS, 0, 30, 60, 10**6, neighbours=CHAPTERS)
    assert (train, probe) == (again_train, again_probe)
    assert len({CHAPTERS[doc] for doc in probe.corpus}) > 20  # random distractors span most chapters


def test_lexical_distractors_are_each_answers_nearest_documents():
    # four topics of ten documents; an answer's nearest documents share its topic's words
    topics = ["ship sail harbour", "bread flour oven", "court judge appeal", "gene protein cell"]
    docs = [f"{words} number{i} extra{i % 3}" for words in topics for i in range(10)]
    pairs = [(f"query {i}", doc) for i, doc in enumerate(docs)]
    train, probe = split_retrieval(pairs, 0, probe_queries=2, probe_corpus=8, max_train=10**6,
                                   probe_share=1.0, distractors="lexical")
    assert (len(probe.queries), len(probe.corpus)) == (2, 8)
    topic_of = {doc: words for words in topics for doc in docs if doc.startswith(words)}
    answer_topics = {topic_of[probe.corpus[0]], topic_of[probe.corpus[1]]}
    assert {topic_of[doc] for doc in probe.corpus} == answer_topics  # every distractor is a near miss
    assert not {ex.positive for ex in train} & set(probe.corpus)
    assert len(train) == len(docs) - 8
    random_train, random_probe = split_retrieval(pairs, 0, 2, 8, 10**6, probe_share=1.0)
    assert random_probe.queries == probe.queries  # the same answers; only the distractors differ
    assert len({topic_of[doc] for doc in random_probe.corpus}) > 2


def test_neighbours_without_a_neighbourhood_map_is_random():
    assert split_retrieval(PAIRS, 0, 30, 60, 10**6, distractors="neighbours") == split_retrieval(PAIRS, 0, 30, 60, 10**6)
