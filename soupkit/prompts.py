"""Which of a model's own prompts a task family uses, for each side of a pair.

Models declare prompts by name (sentence-transformers' `model.prompts`); EmbeddingGemma names
them after MTEB task types ("Retrieval-query", "Clustering", ...) plus "query"/"document".
A model without a matching prompt gets none: soupkit never invents a prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Role = Literal["query", "document"]

# Candidate prompt names, most specific first. Symmetric tasks use the same name on both sides.
PROMPT_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "retrieval": {"query": ("Retrieval-query", "query"), "document": ("Retrieval-document", "document")},
    "code": {
        "query": ("InstructionRetrieval", "CodeRetrieval-query", "Retrieval-query", "query"),
        "document": ("CodeRetrieval-document", "Retrieval-document", "document"),
    },
    "classification": {"query": ("Classification",), "document": ("Classification",)},
    "clustering": {"query": ("Clustering",), "document": ("Clustering",)},
    "similarity": {"query": ("STS",), "document": ("STS",)},
    "paraphrase": {"query": ("STS", "PairClassification"), "document": ("STS", "PairClassification")},
    "bitext": {"query": ("BitextMining",), "document": ("BitextMining",)},
}

# EmbeddingGemma's published prompts (google/embeddinggemma-300m, config_sentence_transformers.json).
EMBEDDINGGEMMA_PROMPTS: dict[str, str] = {
    "query": "task: search result | query: ",
    "document": "title: none | text: ",
    "BitextMining": "task: search result | query: ",
    "Clustering": "task: clustering | query: ",
    "Classification": "task: classification | query: ",
    "InstructionRetrieval": "task: code retrieval | query: ",
    "MultilabelClassification": "task: classification | query: ",
    "PairClassification": "task: sentence similarity | query: ",
    "Reranking": "task: search result | query: ",
    "Retrieval": "task: search result | query: ",
    "Retrieval-query": "task: search result | query: ",
    "Retrieval-document": "title: none | text: ",
    "STS": "task: sentence similarity | query: ",
    "Summarization": "task: summarization | query: ",
}


def prompt_for(prompts: Mapping[str, str] | None, task: str, role: Role) -> str:
    """The prompt text the model defines for this task and side, or "" when it defines none."""
    if not prompts:
        return ""
    for name in PROMPT_NAMES.get(task, {}).get(role, ()):
        if prompts.get(name):
            return prompts[name]
    return ""
