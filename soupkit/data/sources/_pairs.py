"""A guard shared by the look-up-table sources (abbreviations, code names, citations, lemmas)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def one_document_per_query(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(query, document) pairs whose query points at exactly one document, in a stable order.

    Look-up tables hold ambiguous keys ("FU" is both "fluorouracil" and "follow up"). Such a query
    has no single right answer, and split_retrieval could put it on both sides of the split.
    """
    docs_of: dict[str, set[str]] = defaultdict(set)
    for query, doc in pairs:
        if query and doc:
            docs_of[query].add(doc)
    return sorted((query, next(iter(docs))) for query, docs in docs_of.items() if len(docs) == 1)
