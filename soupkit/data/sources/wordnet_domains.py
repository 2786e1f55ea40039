"""Medical and legal term -> definition families from WordNet's topic domains (Debian wordnet-base).

WordNet's lexicographers tag synsets with the field they belong to (a `;c` topic-domain pointer:
"easement" -> law, "appendectomy" -> surgery). A domain is a set of such fields, found from a root
synset by following hypernyms, so "surgery" and "psychiatry" count as medicine because they are
kinds of medical science. The medical domain also takes every kind of illness, symptom and
medication (hyponym trees), except plant diseases.

The offsets below are WordNet 3.0's; `check_offsets` fails loudly if the database is another one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.data.sources.wordnet import INSTALL, SOURCE, Synset, load_synsets, wordnet_dir
from soupkit.data.split import split_retrieval
from soupkit.errors import MissingSourceError

DESCRIPTION = "WordNet lemma in the {domain} domain -> its definition"

MEDICAL_FIELDS = {"06045562n": "medical science", "00612160n": "medicine"}  # the second: practice of medicine
MEDICAL_TREES = {"14061805n": "illness", "14299637n": "symptom", "03740161n": "medicine"}  # medicine: medication
MEDICAL_EXCLUDED_TREES = {"14276936n": "plant disease"}
LEGAL_FIELDS = {"08441203n": "law", "00611143n": "law"}  # jurisprudence; practice of law

def check_offsets(synsets: Mapping[str, Synset], expected: Mapping[str, str], family: str) -> None:
    for key, lemma in expected.items():
        if key not in synsets or synsets[key].lemmas[0] != lemma:
            raise MissingSourceError(family, f"WordNet 3.0 (synset {key} should be '{lemma}')", INSTALL)


def _closure(synsets: Mapping[str, Synset], start: str, follow: str) -> set[str]:
    """`start` and every synset reached by repeatedly following its `follow` pointers."""
    seen, stack = {start}, [start]
    while stack:
        for key in getattr(synsets[stack.pop()], follow):
            if key not in seen:
                seen.add(key)
                stack.append(key)
    return seen


def domain_synsets(
    synsets: Mapping[str, Synset], fields: Iterable[str], trees: Iterable[str] = (), excluded: Iterable[str] = ()
) -> set[str]:
    """Synsets filed under a topic that is, or is a kind of, one of `fields`; plus the hyponym
    trees of `trees` minus those of `excluded`."""
    fields = set(fields)
    topics = {t for s in synsets.values() for t in s.topics}
    in_domain = {t for t in topics if _closure(synsets, t, "hypernyms") & fields}
    chosen = {key for key, s in synsets.items() if set(s.topics) & in_domain}
    for root in trees:
        chosen |= _closure(synsets, root, "hyponyms")
    for root in excluded:
        chosen -= _closure(synsets, root, "hyponyms")
    return chosen


def lemma_definition_pairs(synsets: Mapping[str, Synset], chosen: Iterable[str]) -> list[tuple[str, str]]:
    """(lemma, definition) for every lemma of the chosen synsets. A lemma with two chosen senses
    ("medicine": the field and the drug) has no single answer and is left out."""
    pairs = [(lemma, synsets[key].definition) for key in chosen for lemma in synsets[key].lemmas]
    return one_document_per_query(p for p in pairs if p[1])


def _wordnet_family(name: str, chosen_by, options: BuildOptions) -> FamilyData:
    synsets = load_synsets(wordnet_dir(name))
    pairs = lemma_definition_pairs(synsets, chosen_by(synsets, name))
    train, probe = split_retrieval(
        pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train, probe_share=options.probe_share
    )
    return train, probe


def medical_synsets(synsets: Mapping[str, Synset], family: str = "medical-wordnet") -> set[str]:
    check_offsets(synsets, {**MEDICAL_FIELDS, **MEDICAL_TREES, **MEDICAL_EXCLUDED_TREES}, family)
    return domain_synsets(synsets, MEDICAL_FIELDS, MEDICAL_TREES, MEDICAL_EXCLUDED_TREES)


def legal_synsets(synsets: Mapping[str, Synset], family: str = "legal-wordnet") -> set[str]:
    check_offsets(synsets, LEGAL_FIELDS, family)
    return domain_synsets(synsets, LEGAL_FIELDS)


@builtin_family(
    "medical-wordnet",
    task="retrieval",
    source=SOURCE,
    install=INSTALL,
    description=DESCRIPTION.format(domain="medicine (illnesses, symptoms, medications, medical fields)"),
)
def medical_wordnet(options: BuildOptions) -> FamilyData:
    return _wordnet_family("medical-wordnet", medical_synsets, options)


@builtin_family(
    "legal-wordnet",
    task="retrieval",
    source=SOURCE,
    install=INSTALL,
    description=DESCRIPTION.format(domain="law"),
)
def legal_wordnet(options: BuildOptions) -> FamilyData:
    return _wordnet_family("legal-wordnet", legal_synsets, options)
