"""Licence clauses -> licence, with ScanCode's false positives as hard negatives (licensedcode-data).

Besides notices (legal-licences), ScanCode's curators keep rules that are passages of licence
text, licence introductions and licence clues, each filed under the one licence it belongs to, and
1,228 rules flagged as false positives: text that looks like licensing (a comment about licences,
a build flag named after one) but grants nothing. A clause's hard negative is the false positive
sharing the most words with it, so the model learns that talking about a licence is not being one.
"""

from __future__ import annotations

import functools
import glob
import os
import re
from dataclasses import replace

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources.scancode_licences import (
    INSTALL,
    SOURCE,
    licence_document,
    licensedcode_data_dir,
    load_licences,
    plain,
    read_front_matter,
)
from soupkit.data.split import split_retrieval

CLAUSE_FLAGS = ("is_license_text", "is_license_intro", "is_license_clue")
MAX_CLAUSE_CHARS = 400
MIN_WORDS = 8  # a clause; a false positive needs only MIN_FALSE_POSITIVE_WORDS ("compiled with --enable-gpl")
MIN_FALSE_POSITIVE_WORDS = 3
DESCRIPTION = ("passage, introduction or clue of a licence -> '<licence name>: <start of its text>'; "
               "hard negative a ScanCode false positive sharing its words")
_WORD = re.compile(r"[a-z]{4,}")


@functools.lru_cache(maxsize=1)
def load_rules(data_dir: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """((clause, licence key) for English clause rules naming one licence, false-positive texts)."""
    clauses, false_positives = [], []
    for path in sorted(glob.glob(os.path.join(data_dir, "rules", "*.RULE"))):
        fields, body = read_front_matter(path)
        if fields.get("is_deprecated") == "yes" or fields.get("language", "en") != "en":
            continue
        text = plain(body, MAX_CLAUSE_CHARS)
        if fields.get("is_false_positive") == "yes":
            if len(text.split()) >= MIN_FALSE_POSITIVE_WORDS:
                false_positives.append(text)
        elif len(text.split()) >= MIN_WORDS and any(fields.get(flag) == "yes" for flag in CLAUSE_FLAGS):
            key = fields.get("license_expression", "")
            if re.fullmatch(r"[a-z0-9][a-z0-9.+_-]*", key):
                clauses.append((text, key))
    return tuple(clauses), tuple(false_positives)


def closest_false_positive(clause: str, false_positives: list[tuple[str, frozenset[str]]]) -> str | None:
    """The false positive with the most words (4+ letters) in common with `clause`, if any."""
    words = set(_WORD.findall(clause.lower()))
    best, best_overlap = None, 1  # at least two shared words
    for text, fp_words in false_positives:
        overlap = len(words & fp_words)
        if overlap > best_overlap:
            best, best_overlap = text, overlap
    return best


@builtin_family("legal-licence-clauses", task="retrieval", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def licence_clauses(options: BuildOptions) -> FamilyData:
    data_dir = licensedcode_data_dir("legal-licence-clauses")
    licences = load_licences(data_dir)
    clauses, false_positives = load_rules(data_dir)
    keys_of: dict[str, set[str]] = {}
    for clause, key in clauses:
        if key in licences and licences[key].specific:
            keys_of.setdefault(clause, set()).add(key)
    pairs = [(clause, licence_document(licences[next(iter(keys))])) for clause, keys in keys_of.items() if len(keys) == 1]
    fp_words = [(t, frozenset(_WORD.findall(t.lower()))) for t in false_positives]
    negatives = {}
    for clause, _ in pairs:
        if (fp := closest_false_positive(clause, fp_words)) is not None:
            negatives[clause] = fp
    # split_retrieval keeps only negatives that are training documents; a false positive is no
    # document on either side of the split, so it is attached after the split
    train, probe = split_retrieval(pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train)
    train = [replace(e, negative=negatives[e.anchor]) if e.anchor in negatives else e for e in train]
    return train, probe
