"""Gene Ontology term -> definition (Debian r-bioc-go.db: Bioconductor's GO.db, `GO.sqlite`).

43,559 biological process, molecular function and cellular component terms with curated
definitions: biomedical rather than clinical meaning ("apoptotic process",
"insulin receptor binding"). The same task and hard negatives as the OBO families
(soupkit.data.sources.ontologies): a term's name -> its definition, a sibling's definition as the
hard negative. GO.db does not record a synonym's scope (exact, broad, related: "induction of
apoptosis by p53" is filed as a synonym of "apoptotic process"), so synonyms are not used. Licences: the Gene Ontology is CC BY 4.0 (Gene Ontology Consortium); the
Debian package GO.db that carries it is Artistic-2.0. It is read at run time, never shipped.
"""

from __future__ import annotations

import functools
import glob
import sqlite3
from collections import defaultdict

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources.ontologies import definition_pairs
from soupkit.data.split import split_retrieval
from soupkit.errors import MissingSourceError

INSTALL = "apt-get install --no-install-recommends r-bioc-go.db"  # GO.sqlite is in the package: 50 packages, not 720
SOURCE = "Gene Ontology (CC BY 4.0, Gene Ontology Consortium) via Debian r-bioc-go.db (GO.db, Artistic-2.0)"
DESCRIPTION = "Gene Ontology term name -> its definition; hard negative a sibling term's definition"
SEARCH_PATHS = ("/usr/lib/R/site-library/GO.db/extdata/GO.sqlite", "/usr/lib/R/library/GO.db/extdata/GO.sqlite",
                "/usr/local/lib/R/site-library/GO.db/extdata/GO.sqlite")


def go_sqlite(family: str, paths=SEARCH_PATHS) -> str:
    for pattern in paths:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise MissingSourceError(family, "the Gene Ontology database GO.sqlite (Debian r-bioc-go.db)", INSTALL)


@functools.lru_cache(maxsize=1)
def load_go_terms(path: str) -> dict[str, dict]:
    """{GO id: {label, description, ancestors: {parent id: 1}}}, the shape the OBO families read,
    so one function pairs and picks siblings for both."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT _id, go_id, term, definition FROM go_term WHERE go_id LIKE 'GO:%'").fetchall()
        go_id = {row_id: gid for row_id, gid, _, _ in rows}
        parents: dict[int, dict[str, int]] = defaultdict(dict)
        for table in ("go_bp_parents", "go_mf_parents", "go_cc_parents"):
            for row_id, parent_id, relation in db.execute(f"SELECT _id, _parent_id, relationship_type FROM {table}"):
                if relation == "isa" and parent_id in go_id:
                    parents[row_id][go_id[parent_id]] = 1
    return {
        gid: {"label": term, "description": definition or "", "ancestors": parents[row_id]}
        for row_id, gid, term, definition in rows
    }


@builtin_family("medical-go", task="retrieval", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def medical_go(options: BuildOptions) -> FamilyData:
    pairs, negatives = definition_pairs(load_go_terms(go_sqlite("medical-go")), options.seed)
    train, probe = split_retrieval(
        pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train,
        negatives=negatives, probe_share=options.probe_share,
    )
    return train, probe
