"""Paraphrase family from two English Bibles (Debian sword-text-kjv, sword-text-web; public domain).

The same verse in the King James Version (1769) and the World English Bible is a human-written
paraphrase pair: same meaning, different wording ("spake unto" vs "spoke to"). The SWORD modules
are read with a small pure-Python zText reader, so libsword is not needed.

The two modules use different versifications (KJV vs NRSVA, which adds the deuterocanon), so
verses are paired by their OSIS reference, never by raw index position.
"""

from __future__ import annotations

import functools
import html
import os
import re
import struct
import zlib

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.split import split_retrieval
from soupkit.errors import MissingSourceError

SWORD_ROOT = "/usr/share/sword"
KJV_MODULE = "engKJV2006eb"
WEB_MODULE = "engWEB2015eb"
INSTALL = "apt-get install sword-text-kjv sword-text-web"
SOURCE = "King James Version and World English Bible (Debian sword-text-kjv, sword-text-web; public domain)"
DESCRIPTION = "KJV verse -> the same verse in the World English Bible (paraphrase retrieval)"
MIN_WORDS = 5

_CHAPTER_START = re.compile(r'<chapter\b[^>]*\bsID="([^"]+)"')
_BOOK_START = re.compile(r'<div\b[^>]*\btype="book"[^>]*\bsID=|<div\b[^>]*\bsID=[^>]*\btype="book"')
_DROPPED_ELEMENTS = re.compile(r"<(note|title)\b[^>]*>.*?</\1>", re.DOTALL)  # footnotes and headings
_TAG = re.compile(r"<[^>]+>")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?)])")


def module_data_dir(family: str, module: str, root: str = SWORD_ROOT) -> str:
    """The module's data folder, after checking its .conf says a reader this small can read it."""
    candidates = [os.path.join(root, "mods.d", f"{name}.conf") for name in (module, module.lower())]
    conf_path = next((path for path in candidates if os.path.exists(path)), None)
    if conf_path is None:
        raise MissingSourceError(family, f"the SWORD module {module}", INSTALL)
    with open(conf_path, encoding="utf-8") as f:
        conf = dict(line.strip().split("=", 1) for line in f if "=" in line and not line.startswith("#"))
    expected = {"ModDrv": "zText", "CompressType": "ZIP", "Encoding": "UTF-8", "SourceType": "OSIS"}
    for key, value in expected.items():
        if conf.get(key, "").lower() != value.lower():
            raise ValueError(f"SWORD module {module}: {key}={conf.get(key)!r}, this reader handles only {value}")
    data_dir = os.path.normpath(os.path.join(root, conf["DataPath"]))
    if not os.path.exists(os.path.join(data_dir, "nt.bzs")):
        raise MissingSourceError(family, f"the data files of SWORD module {module}", INSTALL)
    return data_dir


def read_ztext_entries(data_dir: str, testament: str) -> list[str]:
    """Every index entry of one testament ('ot' or 'nt'), as raw markup ('' where empty).

    .bzs holds blocks (offset, compressed size, uncompressed size: uint32 LE), .bzv one entry per
    verse slot (block number uint32, offset uint32, size uint16) and .bzz the zlib blocks.
    """
    paths = {ext: os.path.join(data_dir, f"{testament}.{ext}") for ext in ("bzs", "bzv", "bzz")}
    if not os.path.exists(paths["bzs"]):
        return []
    with open(paths["bzs"], "rb") as f:
        blocks = list(struct.iter_unpack("<III", f.read()))
    with open(paths["bzv"], "rb") as f:
        slots = list(struct.iter_unpack("<IIH", f.read()))
    with open(paths["bzz"], "rb") as f:
        compressed = f.read()
    inflated: dict[int, bytes] = {}
    entries = []
    for block, offset, size in slots:
        if size == 0:
            entries.append("")
            continue
        if block not in inflated:
            start, length, _ = blocks[block]
            inflated[block] = zlib.decompress(compressed[start : start + length])
        entries.append(inflated[block][offset : offset + size].decode("utf-8"))
    return entries


def osis_to_text(markup: str) -> str:
    """Plain verse text: footnotes and headings dropped, tags stripped, whitespace collapsed."""
    # Word tags (<w>) sit inside the text's own spacing, but a dropped footnote may stand between words.
    text = _TAG.sub("", _DROPPED_ELEMENTS.sub(" ", markup)).replace("\u00b6", " ")  # pilcrow: paragraph mark
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(html.unescape(text).split()))


@functools.lru_cache(maxsize=4)
def load_verses(data_dir: str) -> dict[str, str]:
    """Plain text of every non-empty verse, keyed by OSIS reference ('Gen.1.1').

    An index holds a heading slot per chapter and an intro slot per book before the verse slots;
    osis2mod writes the <chapter sID> tag into the heading slot, so verse numbers are counted
    from the last chapter tag, and a book intro stops the count.
    """
    verses: dict[str, str] = {}
    for testament in ("ot", "nt"):
        chapter, verse = None, 0
        for entry in read_ztext_entries(data_dir, testament):
            chapter_tags = _CHAPTER_START.findall(entry)
            if chapter_tags:
                chapter, verse = chapter_tags[-1], 0
            elif _BOOK_START.search(entry):
                chapter = None
            elif chapter is not None:
                verse += 1
                text = osis_to_text(entry)
                if text:
                    verses[f"{chapter}.{verse}"] = text
    return verses


@builtin_family("paraphrase", task="paraphrase", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def bible_paraphrase(options: BuildOptions) -> FamilyData:
    """Pairs the translations verse by verse. Left out: verses under MIN_WORDS words, a KJV verse
    rendered differently in two places (an ambiguous query), and pairs of very unequal length,
    where a module appends other text to a verse (WEB puts its glossary after Rev 22:21 and the
    doxology after Rom 14:23)."""
    kjv = load_verses(module_data_dir("paraphrase", KJV_MODULE))
    web = load_verses(module_data_dir("paraphrase", WEB_MODULE))
    renderings: dict[str, set[str]] = {}
    chapter_of: dict[str, str] = {}  # a verse's neighbourhood: its chapter ('Gen.1')
    for ref in sorted(kjv.keys() & web.keys()):
        shorter, longer = sorted((len(kjv[ref].split()), len(web[ref].split())))
        if shorter >= MIN_WORDS and longer <= 2.5 * shorter + 5:
            renderings.setdefault(kjv[ref], set()).add(web[ref])
            chapter_of.setdefault(web[ref], ref.rsplit(".", 1)[0])
    pairs = [(old, next(iter(new))) for old, new in renderings.items() if len(new) == 1]
    train, probe = split_retrieval(pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train,
                                   distractors=options.probe_distractors, neighbours=chapter_of)
    return train, probe
