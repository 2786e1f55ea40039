"""Deterministic, disjoint train/probe splits.

Everything is ordered by a seeded hash of a stable key, never by input order or Python's
`hash`, so the same seed gives the same split on every machine and in every process.
Retrieval splits by target document, so no probe document (nor any query pointing to it) is
ever trained on; labelled splits by text.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from soupkit.data.family import (
    ClassificationProbeData,
    ClusteringProbeData,
    RetrievalProbeData,
    TrainExample,
)

# the most documents one neighbourhood puts in a probe: enough distractors for each answer, and
# probes of 300 documents still span a dozen neighbourhoods or more
MAX_NEIGHBOURHOOD = 24


def stable_key(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}\x00{key}".encode()).hexdigest()


def stable_shuffle(items: Iterable[str], seed: int) -> list[str]:
    """Unique items in a seeded order that does not depend on the input order."""
    return sorted(set(items), key=lambda k: stable_key(seed, k))


def split_retrieval(
    pairs: Sequence[tuple[str, str]],
    seed: int,
    probe_queries: int,
    probe_corpus: int,
    max_train: int,
    negatives: dict[str, str] | None = None,
    probe_share: float = 1 / 3,
    distractors: str = "random",
    neighbours: Mapping[str, str] | None = None,
) -> tuple[list[TrainExample], RetrievalProbeData]:
    """(query, document) pairs -> training examples and a retrieval probe.

    Documents are the split unit. The probe takes `probe_queries` documents with one query each,
    plus distractor documents up to `probe_corpus` (at most `probe_share` of all documents); all
    other documents train. `negatives` maps a
    query to a hard-negative document (kept only when that document is in the training side).

    `distractors` (the recipe's `probes.distractors`) picks the probe's other documents. "random":
    a seeded random sample. "neighbours", where the source gives `neighbours` (a document -> its
    Bible chapter, Python module, ICD category): the probe takes whole neighbourhoods, so each
    answer competes with its neighbours instead of random documents that differ on every word, a
    probe a strong model no longer saturates. "lexical": each answer's nearest documents by TF-IDF
    cosine (what a keyword search would return), from the whole source. No distractor ever trains.
    """
    by_doc: dict[str, list[str]] = defaultdict(list)
    for query, doc in pairs:
        if query and doc and query != doc:
            by_doc[doc].append(query)
    docs = stable_shuffle(by_doc, seed)
    n_probe_docs = min(probe_corpus, int(len(docs) * probe_share))
    n_queries = min(probe_queries, n_probe_docs)
    by_neighbourhood = distractors == "neighbours" and neighbours is not None
    if by_neighbourhood:
        docs = neighbourhood_order(docs, neighbours, seed)
    elif distractors == "lexical":
        docs = lexical_order(docs, n_queries, n_probe_docs)
    probe_docs, train_docs = docs[:n_probe_docs], docs[n_probe_docs:]
    if by_neighbourhood:  # answers spread over the neighbourhoods; every other document distracts
        answers = set(stable_shuffle(probe_docs, seed)[:n_queries])
        probe_docs = [d for d in probe_docs if d in answers] + [d for d in probe_docs if d not in answers]

    queries, relevant = [], []
    for i, doc in enumerate(probe_docs[:n_queries]):
        queries.append(stable_shuffle(by_doc[doc], seed)[0])
        relevant.append({i})
    probe = RetrievalProbeData(queries=queries, corpus=list(probe_docs), relevant=relevant)

    train_doc_set = set(train_docs)
    rng = random.Random(seed)
    train: list[TrainExample] = []
    for doc in train_docs:
        for query in sorted(by_doc[doc]):
            neg = (negatives or {}).get(query)
            train.append(TrainExample(query, doc, neg if neg in train_doc_set and neg != doc else None, group=doc))
    rng.shuffle(train)
    return train[:max_train], probe


def neighbourhood_order(docs: Sequence[str], neighbours: Mapping[str, str], seed: int,
                        max_size: int = MAX_NEIGHBOURHOOD) -> list[str]:
    """Documents grouped by neighbourhood, neighbourhoods in a seeded order.

    A neighbourhood larger than `max_size` (every `python3-*` package) is cut into runs of
    neighbouring keys, so that no single one fills a probe. A document without a neighbourhood
    is its own.
    """
    members: dict[str, list[str]] = defaultdict(list)
    for doc in docs:
        members[neighbours.get(doc, doc)].append(doc)
    groups: dict[str, list[str]] = {}
    for key, group in members.items():
        group = sorted(group)
        for start in range(0, len(group), max_size):
            groups[f"{key}\x00{start}"] = group[start : start + max_size]
    return [doc for key in stable_shuffle(groups, seed) for doc in groups[key]]


def lexical_order(docs: Sequence[str], n_answers: int, n_probe: int) -> list[str]:
    """`docs` reordered so that the first `n_probe` are the first `n_answers` (the answers, in
    order) followed by their nearest other documents by TF-IDF cosine, taken round-robin (each
    answer's nearest first); the rest keep their order."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if n_probe <= n_answers:
        return list(docs)
    matrix = TfidfVectorizer(sublinear_tf=True).fit_transform(docs)
    similarity = (matrix[:n_answers] @ matrix.T).toarray()
    similarity[range(n_answers), range(n_answers)] = -1.0  # an answer is not its own distractor
    ranked = (-similarity).argsort(axis=1, kind="stable")
    chosen, taken = list(range(n_answers)), set(range(n_answers))
    depth = 0
    while len(chosen) < n_probe and depth < len(docs):
        for row in ranked[:, depth]:
            if row not in taken and len(chosen) < n_probe:
                chosen.append(int(row))
                taken.add(int(row))
        depth += 1
    return [docs[i] for i in chosen] + [d for i, d in enumerate(docs) if i not in taken]


def split_labelled(
    texts: Sequence[tuple[str, str]],
    seed: int,
    probe_size: int,
    max_train: int,
    kind: str,
    min_per_label: int = 2,
) -> tuple[list[TrainExample], ClassificationProbeData | ClusteringProbeData]:
    """(text, label) items -> same-label training pairs and a classification or clustering probe.

    Texts are the split unit. A training pair is (text, another text of the same label) with the
    label as its group, so a batch never holds two examples of one label.
    """
    label_of: dict[str, str] = {}
    for text, label in texts:
        if text and label:
            label_of.setdefault(text, label)
    ordered = stable_shuffle(label_of, seed)
    probe_texts, train_texts = ordered[:probe_size], ordered[probe_size:]

    by_label: dict[str, list[str]] = defaultdict(list)
    for text in train_texts:
        by_label[label_of[text]].append(text)
    rng = random.Random(seed)
    train: list[TrainExample] = []
    for label in sorted(by_label):
        members = by_label[label]
        if len(members) < min_per_label:
            continue
        for text in members:
            partner = members[rng.randrange(len(members))]
            while partner == text:
                partner = members[rng.randrange(len(members))]
            train.append(TrainExample(text, partner, group=label))
    rng.shuffle(train)

    if kind == "clustering":
        probe = ClusteringProbeData(texts=probe_texts, labels=[label_of[t] for t in probe_texts])
    elif kind == "classification":
        half = len(probe_texts) // 2
        probe = ClassificationProbeData(
            train_texts=probe_texts[:half],
            train_labels=[label_of[t] for t in probe_texts[:half]],
            test_texts=probe_texts[half:],
            test_labels=[label_of[t] for t in probe_texts[half:]],
        )
    else:
        raise ValueError(f"unknown labelled probe kind {kind!r}")
    return train[:max_train], probe
