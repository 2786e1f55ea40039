"""Topic clustering of quotes from the Debian `fortunes` package.

The fortune files are human-curated by topic (computers, food, law, politics, ...), so the file a
quote sits in is a free, real cluster label for short, informal text.
"""

from __future__ import annotations

import functools
import os
import random
import re

from soupkit.data.family import ClusteringProbeData
from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.split import split_labelled, stable_key
from soupkit.errors import MissingSourceError

FORTUNES_DIR = "/usr/share/games/fortunes"
INSTALL = "apt-get install fortunes"
SOURCE = "Debian fortunes package (quote files by topic)"
DESCRIPTION = "fortune quote -> its topic file; probe: k-means V-measure over ten topical files"
MIN_CHARS, MAX_CHARS = 20, 500
# Pictures lose their shape once whitespace is normalised; offensive files live in off/ and are
# never read, because only the top level of the folder is listed.
EXCLUDED_FILES = frozenset({"ascii-art"})
# Topical files with little overlap, so k-means clusters can match them. Files such as
# `cookie`, `fortunes` or `miscellaneous` are grab bags and would make V-measure mostly noise.
PROBE_CATEGORIES = (
    "computers", "education", "food", "law", "love", "medicine", "politics", "science", "sports", "startrek",
)  # fmt: skip

_OVERSTRIKE = re.compile(".?\x08")  # old files bold or underline letters with backspaces
_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)


def fortune_files(family: str, path: str = FORTUNES_DIR) -> tuple[str, ...]:
    """The category files: plain files without a suffix (.dat is the index, .u8 a link)."""
    names = sorted(os.listdir(path)) if os.path.isdir(path) else []
    files = tuple(
        os.path.join(path, name)
        for name in names
        if "." not in name and name not in EXCLUDED_FILES and os.path.isfile(os.path.join(path, name))
    )
    if not files:
        raise MissingSourceError(family, f"the fortune files in {path}", INSTALL)
    return files


@functools.lru_cache(maxsize=1)
def load_quotes(files: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(quote, category file name) for every quote of MIN_CHARS..MAX_CHARS characters."""
    quotes = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read()
        for entry in _SEPARATOR.split(raw):
            text = " ".join(_OVERSTRIKE.sub("", entry).split())
            if MIN_CHARS <= len(text) <= MAX_CHARS:
                quotes.append((text, os.path.basename(path)))
    return tuple(quotes)


@builtin_family("clustering", task="clustering", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def fortune_clustering(options: BuildOptions) -> FamilyData:
    """Every file trains; the probe takes an equal share of quotes from each PROBE_CATEGORIES file,
    so no single large file dominates the clusters. Each file is split on its own, after a quote
    filed twice keeps only its first file, so no probe quote is trained on."""
    category_of: dict[str, str] = {}
    for text, category in load_quotes(fortune_files("clustering")):
        category_of.setdefault(text, category)
    by_category: dict[str, list[tuple[str, str]]] = {}
    for text, category in category_of.items():
        by_category.setdefault(category, []).append((text, category))
    probe_categories = [c for c in PROBE_CATEGORIES if c in by_category]
    per_cluster = options.probe_size // max(1, len(probe_categories))

    train, probe_items = [], []
    for category in sorted(by_category):
        n_probe = per_cluster if category in probe_categories else 0
        examples, probe = split_labelled(by_category[category], options.seed, n_probe, options.max_train, "clustering")
        train += examples
        probe_items += zip(probe.texts, probe.labels, strict=True)
    random.Random(options.seed).shuffle(train)
    probe_items.sort(key=lambda item: stable_key(options.seed, item[0]))
    probe = ClusteringProbeData(texts=[t for t, _ in probe_items], labels=[label for _, label in probe_items])
    return train[: options.max_train], probe
