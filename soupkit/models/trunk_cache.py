"""The trunk cache: the frozen bottom's per-token output, computed once per text and reused.

With `finetune.train: top:<k>` the embeddings and the lower L-k layers never change, so their
output for a tokenised text is the same in every training step, trial, probe pass and soup of one
base model. It is stored in one SQLite file per bottom (the digest of the tensors it depends on:
the base model's weights below layer L-k, so another base, another k or changed frozen weights is
another file) under $SOUPKIT_HOME/trunk-cache/, not in a run folder: every run, worker, ingredient
set and adapt bank of one base shares it, and it survives a resume.

A row is one text: the key (a hash of the layer index, the precision, and the token ids, which
already encode the prompt, the text and the truncation length), the hidden states of its real
tokens as raw bytes, and when it was last used. WAL mode and one transaction per batch make
concurrent writers on one machine safe, and a writer killed mid-write leaves the file as its last
commit. The file is bounded: past its size limit the least recently used rows go.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from soupkit.errors import SoupkitError

LIMIT_ENV = "SOUPKIT_TRUNK_CACHE_GB"
DEFAULT_LIMIT_GB = 8.0
# a hit refreshes a row's last-used time only when it is older than this: reads stay reads
TOUCH_SECONDS = 60.0
SUFFIX = ".sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (key BLOB PRIMARY KEY, value BLOB NOT NULL, nbytes INTEGER NOT NULL,
                                    last_used REAL NOT NULL);
CREATE INDEX IF NOT EXISTS entries_last_used ON entries (last_used);
CREATE TABLE IF NOT EXISTS info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS total (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO total VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries
  BEGIN UPDATE total SET bytes = bytes + NEW.nbytes WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries
  BEGIN UPDATE total SET bytes = bytes - OLD.nbytes WHERE id = 0; END;
"""


def cache_root() -> Path:
    from soupkit.models.fetch import soupkit_home

    return soupkit_home() / "trunk-cache"


def size_limit() -> int:
    """Bytes one base's cache may hold: $SOUPKIT_TRUNK_CACHE_GB (default 8), one line if malformed."""
    raw = os.environ.get(LIMIT_ENV)
    if raw is None or raw == "":
        return int(DEFAULT_LIMIT_GB * 2**30)
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not gb > 0 or gb == float("inf"):
        raise SoupkitError(f"{LIMIT_ENV}={raw}: the trunk cache's size limit must be a number of GB above 0")
    return int(gb * 2**30)


class TrunkCache:
    """One bottom's store: rows of token hidden states keyed by bytes; opened lazily per process."""

    def __init__(self, path: Path, limit: int | None = None, info: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.limit = size_limit() if limit is None else limit
        self._info = dict(info or {})
        self._connection: sqlite3.Connection | None = None
        self._pid = -1

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():  # a forked worker opens its own
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most the last commits
            with _transaction(connection):
                for statement in _statements(SCHEMA):
                    connection.execute(statement)
                for name, value in self._info.items():
                    connection.execute("INSERT OR IGNORE INTO info VALUES (?, ?)", (name, value))
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """The stored values of those `keys` that are present."""
        keys = list(dict.fromkeys(keys))
        found: dict[bytes, bytes] = {}
        stale: list[bytes] = []
        now = time.time()
        for start in range(0, len(keys), 500):  # SQLite's bound on parameters per statement
            part = keys[start:start + 500]
            marks = ",".join("?" * len(part))
            for key, value, used in self.connection.execute(
                    f"SELECT key, value, last_used FROM entries WHERE key IN ({marks})", part):
                found[key] = value
                if now - used > TOUCH_SECONDS:
                    stale.append(key)
        if stale:
            with _transaction(self.connection):
                self.connection.executemany("UPDATE entries SET last_used = ? WHERE key = ?",
                                            [(now, key) for key in stale])
        return found

    def put_many(self, items: Mapping[bytes, bytes]) -> None:
        """Store `items` (a key another writer stored first is kept) in one transaction, then drop
        the least recently used rows while the store is over its limit."""
        if not items:
            return
        now = time.time()
        with _transaction(self.connection):
            self.connection.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?)",
                                        [(k, v, len(v), now) for k, v in items.items()])
            self._evict()

    def _evict(self) -> None:
        (total,) = self.connection.execute("SELECT bytes FROM total WHERE id = 0").fetchone()
        excess = total - self.limit
        if excess <= 0:
            return
        victims = []
        for key, nbytes in self.connection.execute("SELECT key, nbytes FROM entries ORDER BY last_used, rowid"):
            victims.append((key,))
            excess -= nbytes
            if excess <= 0:
                break
        self.connection.executemany("DELETE FROM entries WHERE key = ?", victims)

    def stats(self) -> CacheStats:
        entries, = self.connection.execute("SELECT COUNT(*) FROM entries").fetchone()
        (stored,) = self.connection.execute("SELECT bytes FROM total WHERE id = 0").fetchone()
        info = dict(self.connection.execute("SELECT name, value FROM info"))
        return CacheStats(self.path, entries, stored, file_bytes(self.path), info)

    def close(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None


@dataclass(frozen=True)
class CacheStats:
    path: Path
    entries: int
    stored_bytes: int  # the rows' tensor bytes
    file_bytes: int  # on disk, with SQLite's pages and write-ahead log
    info: dict[str, str]


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def cache_files(root: Path | None = None) -> list[Path]:
    root = cache_root() if root is None else Path(root)
    return sorted(root.glob(f"*{SUFFIX}")) if root.is_dir() else []


def clear_cache(root: Path | None = None) -> int:
    """Remove every base's cache file (with its WAL and shared-memory files); the bytes freed."""
    freed = 0
    for path in cache_files(root):
        freed += file_bytes(path)
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            part.unlink(missing_ok=True)
    return freed


def _statements(script: str) -> list[str]:
    """The schema's statements (a trigger's body holds a `;` of its own)."""
    out, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if line.rstrip().endswith(";") and (current.count("BEGIN") == current.count("END;")):
            out.append(current)
            current = ""
    return out


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): a writer takes the lock before reading the
    total, so two writers never evict from the same stale sum."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, kind, value, traceback) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")
