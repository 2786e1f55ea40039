"""Prompt selection: a model's own prompt for each task type and side, never an invented one."""

from __future__ import annotations

import pytest

from soupkit.prompts import EMBEDDINGGEMMA_PROMPTS, PROMPT_NAMES, prompt_for

SEARCH_QUERY = "task: search result | query: "
DOCUMENT = "title: none | text: "


@pytest.mark.parametrize(
    "task, role, expected",
    [
        ("retrieval", "query", SEARCH_QUERY),
        ("retrieval", "document", DOCUMENT),
        ("code", "query", "task: code retrieval | query: "),
        ("code", "document", DOCUMENT),
        ("classification", "query", "task: classification | query: "),
        ("classification", "document", "task: classification | query: "),
        ("clustering", "query", "task: clustering | query: "),
        ("clustering", "document", "task: clustering | query: "),
        ("similarity", "query", "task: sentence similarity | query: "),
        ("similarity", "document", "task: sentence similarity | query: "),
        ("paraphrase", "document", "task: sentence similarity | query: "),
        ("bitext", "query", SEARCH_QUERY),
    ],
)
def test_embeddinggemma_prompts_per_task_and_side(task, role, expected):
    assert prompt_for(EMBEDDINGGEMMA_PROMPTS, task, role) == expected


@pytest.mark.parametrize("prompts", [None, {}])
def test_a_model_without_prompts_gets_none(prompts):
    for task in PROMPT_NAMES:
        assert prompt_for(prompts, task, "query") == ""
        assert prompt_for(prompts, task, "document") == ""


def test_generic_query_and_document_prompts_serve_retrieval_only():
    prompts = {"query": "query: ", "document": "passage: "}
    assert prompt_for(prompts, "retrieval", "query") == "query: "
    assert prompt_for(prompts, "retrieval", "document") == "passage: "
    assert prompt_for(prompts, "code", "query") == "query: "
    # No "Clustering" prompt: a clustering family must not borrow the retrieval prefix.
    assert prompt_for(prompts, "clustering", "query") == ""
    assert prompt_for(prompts, "classification", "document") == ""


def test_most_specific_name_wins_and_empty_prompts_are_skipped():
    prompts = {"Retrieval-query": "specific: ", "query": "generic: ", "Retrieval-document": ""}
    assert prompt_for(prompts, "retrieval", "query") == "specific: "
    assert prompt_for(prompts, "retrieval", "document") == ""
    prompts["document"] = "doc: "
    assert prompt_for(prompts, "retrieval", "document") == "doc: "


def test_paraphrase_falls_back_to_pair_classification():
    assert prompt_for({"PairClassification": "pair: "}, "paraphrase", "query") == "pair: "


def test_unknown_task_gets_no_prompt():
    assert prompt_for(EMBEDDINGGEMMA_PROMPTS, "astrology", "query") == ""
