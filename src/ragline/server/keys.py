"""API keys of the service: created by `ragline keys create`, stored hashed in
`$RAGLINE_HOME/keys.sqlite`, checked on every request but the health probes.

A key reads `rlk_<id>_<secret>`: the id finds its row, and the sha256 of the whole key is compared
with the stored hash in constant time (`hmac.compare_digest`). The key itself is shown once, when
it is created, and never stored, logged or put in a message; the id is what logs and `keys list`
show. Plain stdlib, so `ragline keys ...` works without the `server` extra.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragline import _sqlite
from ragline.errors import ConfigError
from ragline.paths import ragline_home

KEYS_FILE = "keys.sqlite"
ALL_COLLECTIONS = "*"
_KEY = re.compile(r"^rlk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
_COLLECTION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    collections TEXT NOT NULL,
    rate REAL,
    burst INTEGER,
    concurrency INTEGER,
    created REAL NOT NULL,
    revoked REAL
)
"""


def default_keys_path() -> Path:
    return ragline_home() / KEYS_FILE


def valid_collection_name(name: str) -> bool:
    """Lower-case letters, digits, '-' and '_', at most 64, starting with a letter or digit:
    a name that is also a safe folder name."""
    return bool(_COLLECTION.match(name))


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never the key itself): its id, what it may use and its own limits."""

    id: str
    name: str
    collections: tuple[str, ...]
    created: float
    revoked: float | None = None
    rate: float | None = None  # requests per second (None: the server's default)
    burst: int | None = None
    concurrency: int | None = None

    def allows(self, collection: str) -> bool:
        return ALL_COLLECTIONS in self.collections or collection in self.collections

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "collections": list(self.collections),
                "created": self.created, "revoked": self.revoked, "rate": self.rate,
                "burst": self.burst, "concurrency": self.concurrency}


def parse_collections(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """`a,b` (or a list) as collection names; empty or `*` means every collection."""
    items = text.split(",") if isinstance(text, str) else list(text or [])
    names = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    if not names or ALL_COLLECTIONS in names:
        return (ALL_COLLECTIONS,)
    bad = [n for n in names if not valid_collection_name(n)]
    if bad:
        raise ConfigError(f"invalid collection name(s) {', '.join(map(repr, bad))}: use lower-case "
                          "letters, digits, '-' and '_' (at most 64), or '*' for all")
    return names


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The keys file. Each call opens and closes its own connection, so one store serves any
    thread and several server workers share the file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_keys_path()

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return _sqlite.transaction(self.path, _SCHEMA)

    def create(self, collections: Sequence[str], *, name: str = "", rate: float | None = None,
               burst: int | None = None, concurrency: int | None = None) -> tuple[ApiKey, str]:
        """A new key for `collections`: (its record, the key). The key is not kept."""
        for value, label in ((rate, "rate"), (burst, "burst"), (concurrency, "concurrency")):
            if value is not None and value <= 0:
                raise ConfigError(f"{label} must be positive, got {value}")
        key_id = secrets.token_hex(6)
        key = f"rlk_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(id=key_id, name=name or key_id, collections=tuple(collections),
                        created=time.time(), rate=rate, burst=burst, concurrency=concurrency)
        with self._db() as conn:
            conn.execute(
                "INSERT INTO keys (id, name, hash, collections, rate, burst, concurrency, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.name, _hash(key), json.dumps(list(record.collections)),
                 rate, burst, concurrency, record.created))
        return record, key

    def keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT id, name, collections, created, revoked, rate, burst, concurrency "
                "FROM keys ORDER BY created").fetchall()
        keys = [_record(row) for row in rows]
        return [k for k in keys if include_revoked or k.revoked is None]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke by id (what `keys list` shows); a key given whole is read for its id."""
        match = _KEY.match(key_id)
        key_id = match.group(1) if match else key_id
        with self._db() as conn:
            conn.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                         (time.time(), key_id))
            row = conn.execute(
                "SELECT id, name, collections, created, revoked, rate, burst, concurrency "
                "FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no key with id {key_id!r}; `ragline keys list` shows the ids")
        return _record(row)

    def authenticate(self, key: str) -> ApiKey | None:
        """The record of a valid, unrevoked key; None for anything else."""
        match = _KEY.match(key)
        if match is None:
            return None
        with self._db() as conn:
            row = conn.execute(
                "SELECT id, name, collections, created, revoked, rate, burst, concurrency, hash "
                "FROM keys WHERE id = ?", (match.group(1),)).fetchone()
        if row is None or not hmac.compare_digest(row[8], _hash(key)):
            return None
        record = _record(row[:8])
        return None if record.revoked is not None else record


def _record(row: Sequence[Any]) -> ApiKey:
    key_id, name, collections, created, revoked, rate, burst, concurrency = row
    return ApiKey(id=str(key_id), name=str(name), collections=tuple(json.loads(collections)),
                  created=float(created), revoked=None if revoked is None else float(revoked),
                  rate=None if rate is None else float(rate),
                  burst=None if burst is None else int(burst),
                  concurrency=None if concurrency is None else int(concurrency))
