"""Legal families from the ScanCode licence database (PyPI licensedcode-data; CC-BY-4.0, nexB).

ScanCode's curators matched thousands of real licence notices, references and tags found in
source code to the licence each one invokes, and filed every licence text in a category
(Permissive, Copyleft, ...). That gives two human-labelled legal tasks: notice -> licence, and
licence text -> category.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.split import split_labelled, split_retrieval
from soupkit.errors import MissingSourceError

INSTALL = "pip install licensedcode-data"
SOURCE = "ScanCode LicenseDB (PyPI licensedcode-data, CC-BY-4.0, (c) nexB Inc. and others)"
NOTICE_FLAGS = ("is_license_notice", "is_license_reference", "is_license_tag")
MIN_NOTICE_WORDS = 5
MAX_NOTICE_CHARS = 500
DOCUMENT_TEXT_CHARS = 400
CATEGORY_TEXT_CHARS = 500
NOTICE_DESCRIPTION = "licence notice, reference or tag found in code -> '<licence name>: <start of its text>'"
CATEGORY_DESCRIPTION = "start of a licence text -> ScanCode category (Permissive, Copyleft, ... 11 classes)"
_FRONT_MATTER = re.compile(r"---\n(.*?)\n---(?:\n|$)(.*)", re.DOTALL)  # an empty text ends the file at "---"
_SINGLE_KEY = re.compile(r"^[a-z0-9][a-z0-9.+_-]*$")  # one licence, not an expression like "mit OR apache-2.0"


@dataclass(frozen=True)
class Licence:
    key: str
    name: str
    category: str
    text: str
    specific: bool  # False for ScanCode's placeholders ("unknown licence reference", generic CLAs)


def licensedcode_data_dir(family: str) -> str:
    try:
        import licensedcode  # the package is a namespace folder holding only data/
    except ImportError:
        raise MissingSourceError(family, "PyPI package licensedcode-data", INSTALL) from None
    for folder in getattr(licensedcode, "__path__", []):
        if os.path.isdir(os.path.join(folder, "data", "licenses")):
            return os.path.join(folder, "data")
    raise MissingSourceError(family, "the licence files of licensedcode-data", INSTALL)


def read_front_matter(path: str) -> tuple[dict[str, str], str]:
    """Top-level scalar fields of a `---` YAML header, and the text after it.

    Only flat `key: value` lines are needed, and reading them directly is many times faster
    than a YAML parser over ~37,000 files.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        raw = f.read()
    match = _FRONT_MATTER.match(raw)
    if match is None:
        return {}, raw
    header, body = match.groups()
    fields: dict[str, str] = {}
    last = None
    for line in header.splitlines():
        if line[:1] in (" ", "\t"):
            if last is not None and fields[last] and not line.strip().startswith("- "):
                fields[last] += " " + line.strip()  # a scalar wrapped onto the next line
            continue
        key, _, value = line.partition(":")
        last = key.strip()
        fields[last] = value.strip().strip("'\"")
    return fields, body


def plain(text: str, max_chars: int) -> str:
    """Whitespace collapsed, ScanCode's {{required phrase}} braces dropped, cut at a word."""
    text = " ".join(text.replace("{{", "").replace("}}", "").split())
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0]


@functools.lru_cache(maxsize=1)
def load_licences(data_dir: str) -> Mapping[str, Licence]:
    """Active (not deprecated) English licences with a text, by key (read-only: it is cached)."""
    licences = {}
    for path in sorted(glob.glob(os.path.join(data_dir, "licenses", "*.LICENSE"))):
        fields, body = read_front_matter(path)
        if fields.get("is_deprecated") == "yes" or fields.get("language", "en") != "en" or not body.strip():
            continue
        key = fields.get("key", "")
        specific = fields.get("is_unknown") != "yes" and fields.get("is_generic") != "yes"
        licences[key] = Licence(key, fields.get("name") or key, fields.get("category", ""), body, specific)
    return types.MappingProxyType(licences)


@functools.lru_cache(maxsize=1)
def load_notices(data_dir: str) -> tuple[tuple[str, str], ...]:
    """(notice, licence key) for English notice/reference/tag rules naming exactly one licence."""
    notices = []
    for path in sorted(glob.glob(os.path.join(data_dir, "rules", "*.RULE"))):
        fields, body = read_front_matter(path)
        key = fields.get("license_expression", "")
        if not _SINGLE_KEY.match(key) or not any(fields.get(flag) == "yes" for flag in NOTICE_FLAGS):
            continue
        if fields.get("is_false_positive") == "yes" or fields.get("is_deprecated") == "yes":
            continue
        if fields.get("language", "en") == "en":
            notices.append((plain(body, MAX_NOTICE_CHARS), key))
    return tuple(notices)


def licence_document(licence: Licence) -> str:
    return f"{licence.name}: {plain(licence.text, DOCUMENT_TEXT_CHARS)}"


@builtin_family(
    "legal-licences",
    task="retrieval",
    source=SOURCE,
    install=INSTALL,
    description=NOTICE_DESCRIPTION,
)
def licence_notice_retrieval(options: BuildOptions) -> FamilyData:
    """Left out: notices under MIN_NOTICE_WORDS words, notices ScanCode files under two licences
    (ambiguous queries), and notices of placeholder licences ("unknown licence reference")."""
    data_dir = licensedcode_data_dir("legal-licences")
    licences = load_licences(data_dir)
    keys_of: dict[str, set[str]] = {}
    for notice, key in load_notices(data_dir):
        if key in licences and licences[key].specific and len(notice.split()) >= MIN_NOTICE_WORDS:
            keys_of.setdefault(notice, set()).add(key)
    documents = {key: licence_document(licences[key]) for key in set().union(*keys_of.values())}
    pairs = [(notice, documents[key]) for notice, keys in keys_of.items() if len(keys) == 1 for key in keys]
    train, probe = split_retrieval(pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train)
    return train, probe


@builtin_family(
    "legal-licence-categories",
    task="classification",
    source=SOURCE,
    install=INSTALL,
    description=CATEGORY_DESCRIPTION,
)
def licence_categories(options: BuildOptions) -> FamilyData:
    licences = load_licences(licensedcode_data_dir("legal-licence-categories"))
    items = [(plain(lic.text, CATEGORY_TEXT_CHARS), lic.category) for lic in licences.values() if lic.category]
    train, probe = split_labelled(items, options.seed, 2 * options.probe_size, options.max_train, "classification")
    return train, probe
