"""The user's own data files, read as written: what the hostile-input table cannot show (a file
that must be accepted, row for row)."""

from __future__ import annotations

import json

from soupkit.config import LocalFamily
from soupkit.data.local import build_local_family
from soupkit.data.registry import BuildOptions


def test_jsonl_with_unicode_line_separators_inside_strings_is_read_row_for_row(tmp_path):
    """Issue 31 #10: JSON allows a raw U+2028, U+2029 or U+0085 inside a string; str.splitlines()
    split the rows there and the valid file was refused."""
    separators = ["\u2028", "\u2029", "\u0085"]  # what str.splitlines() splits at, besides \n and \r
    rows = [{"anchor": f"query {i}{separators[i % len(separators)]}tail", "positive": f"document {i}"}
            for i in range(60)]
    path = tmp_path / "mine.jsonl"
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\r\n".join(lines[:2]) + "\n" + "\n".join(lines[2:]) + "\n", encoding="utf-8")  # \r\n ends a row too
    assert all(sep in path.read_text(encoding="utf-8") for sep in separators)  # raw, not escaped
    family = build_local_family(LocalFamily(name="mine", path=str(path)), BuildOptions(probe_size=10, probe_corpus=20))
    anchors = {example.anchor for example in family.train} | set(family.probe.queries)
    documents = {example.positive for example in family.train} | set(family.probe.corpus)
    assert documents == {row["positive"] for row in rows}  # every row read, none split in two
    assert anchors <= {row["anchor"] for row in rows}  # each text whole, its separator kept
    assert any("\u2028" in a for a in anchors) and any("\u0085" in a for a in anchors)
