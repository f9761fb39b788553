"""The small SQLite files the engine keeps in the state dir (the uploader's registry, the
reconstructor's journal): opened in WAL mode, and never a crash loop when one is damaged."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path


def open_db(db_path: Path, create: Callable[[sqlite3.Connection], None]) -> tuple[sqlite3.Connection, Path | None]:
    """Open `db_path` and `create` what it lacks. A file that is not a readable database is
    renamed aside (`<name>.corrupt-<time>`) and a fresh one made; returns the connection and
    where the damaged file went (None when it was fine)."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    aside = None
    try:
        db = _connect(db_path, create)
    except sqlite3.DatabaseError:
        aside = db_path.with_name(f"{db_path.name}.corrupt-{int(time.time())}")
        db_path.rename(aside)
        db = _connect(db_path, create)
    return db, aside


def _connect(db_path: Path, create: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    try:
        create(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a lost last entry costs a re-send or a re-check, never data
    except BaseException:
        db.close()
        raise
    return db
