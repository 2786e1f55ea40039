"""General-domain retrieval from Debian package descriptions (apt's package lists).

Every Debian package has a one-line synopsis and a longer description written by its maintainer,
tens of thousands of them across every field software touches, so synopsis -> description is a
broad, real, short-query retrieval task that needs only apt's own lists.

`apt-cache dumpavail` lists the packages, but the long descriptions live in apt's separate
Translation-en lists (Packages files carry only the synopsis and its Description-md5), which
apt downloads only when asked for English translations.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.data.split import split_retrieval
from soupkit.errors import MissingSourceError

INSTALL = "apt-get update -o Acquire::Languages=en"
SOURCE = "Debian package descriptions (apt-cache dumpavail and apt's Translation-en lists)"
DESCRIPTION = "Debian package synopsis -> its long description"
APT_HELPER = "/usr/lib/apt/apt-helper"  # decompresses apt's lists whatever their compression
MIN_WORDS = 8
MAX_CHARS = 600


def apt_output(family: str, *args: str) -> str:
    if shutil.which(args[0]) is None and not os.path.exists(args[0]):
        raise MissingSourceError(family, f"{args[0]} (apt, on a Debian or Ubuntu system)", INSTALL)
    return subprocess.run(args, check=True, capture_output=True, text=True, errors="replace").stdout


def package_records(text: str, fields: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Deb822 paragraphs (each starts with its Package field), keeping only `fields`; a value's
    continuation lines stay joined by newlines. One regex over the whole text is several times
    faster than a Python loop over apt's million lines."""
    names = "|".join(re.escape(name) for name in ("Package", *fields))
    record: dict[str, str] = {}
    for match in re.finditer(rf"^({names}):[ \t]*(.*(?:\n[ \t].*)*)", text, re.MULTILINE):
        if match.group(1) == "Package" and record:
            yield record
            record = {}
        record[match.group(1)] = match.group(2)
    if record:
        yield record


def clean_long_description(body: str) -> str:
    """Continuation lines joined into running text: ' .' lines only mark paragraph breaks."""
    words = " ".join(line.strip() for line in body.splitlines() if line.strip() != ".").split()
    text = " ".join(words)
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS].rsplit(" ", 1)[0]
    return text


@functools.lru_cache(maxsize=1)
def load_package_descriptions(family: str) -> tuple[tuple[str, str, str], ...]:
    """(package, synopsis, long description) for each available package, one version per name."""
    listed = apt_output(family, "apt-cache", "dumpavail")
    target_files = apt_output(
        family, "apt-get", "-o", "Acquire::Languages=en", "indextargets",
        "--format", "$(FILENAME)", "Identifier: Translations", "Language: en",
    ).split()  # fmt: skip
    long_by_md5: dict[str, str] = {}
    for path in (p for p in target_files if os.path.exists(p)):
        translations = apt_output(family, APT_HELPER, "cat-file", path)
        for record in package_records(translations, ("Description-md5", "Description-en")):
            body = record.get("Description-en", "").partition("\n")[2]
            long_by_md5.setdefault(record.get("Description-md5", ""), body)

    packages: dict[str, tuple[str, str, str]] = {}
    for record in package_records(listed, ("Description", "Description-md5")):
        name = record.get("Package", "")
        synopsis, _, body = record.get("Description", "").partition("\n")
        body = body or long_by_md5.get(record.get("Description-md5", ""), "")
        if name and synopsis and name not in packages:
            packages[name] = (name, synopsis.strip(), clean_long_description(body))
    if not any(long for _, _, long in packages.values()):
        raise MissingSourceError(family, "apt's long package descriptions (Translation-en lists)", INSTALL)
    return tuple(packages[name] for name in sorted(packages))


@builtin_family("general-retrieval", task="retrieval", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def debian_package_retrieval(options: BuildOptions) -> FamilyData:
    """Descriptions under MIN_WORDS words are too thin to retrieve; a synopsis shared by packages
    with different descriptions ("transitional package") has no single answer. Both are left out.
    Packages whose descriptions only differ after MAX_CHARS become one document with several queries."""
    packages = load_package_descriptions("general-retrieval")
    pairs = one_document_per_query(
        (synopsis, long) for _, synopsis, long in packages if len(long.split()) >= MIN_WORDS
    )
    stem_of = {long: package_stem(name) for name, _, long in packages}
    train, probe = split_retrieval(pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train,
                                   distractors=options.probe_distractors, neighbours=stem_of)
    return train, probe


def package_stem(name: str) -> str:
    """A package's neighbourhood: its name up to the first '-' without trailing version digits
    ('libgtk-3-dev' -> 'libgtk', 'python3-numpy' -> 'python'), where its siblings and the
    packages of its ecosystem live."""
    return name.split("-")[0].rstrip("0123456789.") or name
