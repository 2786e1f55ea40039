"""Topic classification from WordNet glosses (Debian wordnet-base).

Every WordNet synset is filed by its lexicographers under one of 45 topical categories
(noun.animal, verb.motion, ...), so a gloss -> category pair is a human-labelled, many-class
topic classification task over short definitions.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.split import split_labelled
from soupkit.errors import MissingSourceError

WORDNET_DIRS = ("/usr/share/wordnet", "/usr/share/wordnet/dict")
DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
INSTALL = "apt-get install wordnet-base"
SOURCE = (
    "WordNet 3.0 (Debian wordnet-base); WordNet 3.0 Copyright 2006 by Princeton University, "
    "used under the WordNet licence"
)
DESCRIPTION = "WordNet gloss -> lexicographer category (45 classes, e.g. noun.animal, verb.motion)"
MIN_WORDS = 3

# The standard lexicographer file names, indexed by the two-digit lex_filenum (lexnames(5WN)).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip


def wordnet_dir(family: str) -> str:
    for path in WORDNET_DIRS:
        if all(os.path.exists(os.path.join(path, name)) for name in DATA_FILES):
            return path
    raise MissingSourceError(family, "the WordNet database (data.noun, data.verb, ...)", INSTALL)


def gloss_definition(gloss: str) -> str:
    """The definition part of a gloss: WordNet appends quoted usage examples after '; "'."""
    definition = gloss.split('; "')[0].strip()
    return "" if definition.startswith('"') else definition.rstrip(";").strip()


_LEMMA_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # adjective position markers: "galore(ip)"


@dataclass(frozen=True)
class Synset:
    lemmas: tuple[str, ...]
    definition: str
    hypernyms: tuple[str, ...]
    hyponyms: tuple[str, ...]
    topics: tuple[str, ...]  # the topic-domain synsets this synset is filed under
    lexname: str  # the lexicographer file, e.g. noun.animal


def synset_key(offset: str, pos: str) -> str:
    """'08441203n'; adjective satellites ('s') share the adjective file and key."""
    return offset + ("a" if pos == "s" else pos)


@functools.lru_cache(maxsize=1)
def load_synsets(path: str) -> Mapping[str, Synset]:
    """Every synset by key. A data line reads `offset lex_filenum ss_type w_cnt [word lex_id]...
    p_cnt [pointer_symbol offset pos source/target]... | gloss` (wndb(5WN))."""
    synsets: dict[str, Synset] = {}
    for name in DATA_FILES:
        with open(os.path.join(path, name), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue
                fields, gloss = line.split(" | ", 1)
                parts = fields.split()
                n_words = int(parts[3], 16)
                lemmas = tuple(_LEMMA_MARKER.sub("", w).replace("_", " ") for w in parts[4 : 4 + 2 * n_words : 2])
                at = 4 + 2 * n_words
                starts = range(at + 1, at + 1 + 4 * int(parts[at]), 4)
                pointers = [(parts[i], synset_key(parts[i + 1], parts[i + 2])) for i in starts]
                synsets[synset_key(parts[0], parts[2])] = Synset(
                    lemmas,
                    gloss_definition(gloss),
                    tuple(k for s, k in pointers if s in ("@", "@i")),
                    tuple(k for s, k in pointers if s in ("~", "~i")),
                    tuple(k for s, k in pointers if s == ";c"),
                    LEXNAMES[int(parts[1])],
                )
    return synsets



@builtin_family("topic-classification", task="classification", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def wordnet_topics(options: BuildOptions) -> FamilyData:
    """Definitions shorter than MIN_WORDS words say too little about their topic, so they are left out."""
    synsets = load_synsets(wordnet_dir("topic-classification"))
    items = [(s.definition, s.lexname) for s in synsets.values() if len(s.definition.split()) >= MIN_WORDS]
    train, probe = split_labelled(items, options.seed, 2 * options.probe_size, options.max_train, "classification")
    return train, probe
