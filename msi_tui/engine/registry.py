"""What the folder uploader has sent, kept in SQLite in the user state dir.

A restart must neither re-send finished, unchanged files nor forget half-sent ones: a file
is `done` only once every chunk was acknowledged, and only with the size and mtime it had
when it was read. The registry lives outside the watched folder so it is never uploaded.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from msi_tui.engine.events import Notice, Sink

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    destination TEXT NOT NULL,
    folder TEXT NOT NULL,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    upload_id TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (destination, folder, relpath)
)
"""


class Registry:
    """Thread-safe record of uploads per (destination, folder, relative path)."""

    def __init__(self, db_path: Path, destination: str, folder: Path, sink: Sink) -> None:
        self.destination = destination
        self.folder = str(folder.resolve())
        self._lock = threading.Lock()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open(db_path, sink)

    @staticmethod
    def _open(db_path: Path, sink: Sink) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
            db.execute(SCHEMA)
            db.execute("SELECT count(*) FROM uploads").fetchone()
        except sqlite3.DatabaseError as exc:
            # A corrupt registry must never become a crash loop: keep it aside, start afresh.
            aside = db_path.with_name(f"{db_path.name}.corrupt-{int(time.time())}")
            db_path.rename(aside)
            sink(Notice(level="warning", message=f"upload registry was unreadable ({exc}); kept as {aside.name}, files will be re-sent", at=time.time()))
            db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
            db.execute(SCHEMA)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def is_done(self, relpath: str, size: int, mtime_ns: int) -> bool:
        """True when this exact version of the file was fully acknowledged before."""
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, state FROM uploads WHERE destination=? AND folder=? AND relpath=?",
                (self.destination, self.folder, relpath),
            ).fetchone()
        return row == (size, mtime_ns, "done")

    def mark(self, relpath: str, size: int, mtime_ns: int, upload_id: str, chunk_size: int, state: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.destination, self.folder, relpath, size, mtime_ns, upload_id, chunk_size, state, time.time()),
            )

    def unfinished(self, relpath: str) -> tuple[str, int, int] | None:
        """(upload id, size, chunk size) of an upload of this file that never completed:
        the uploader died or gave up part-way, and reconstructors still wait for it."""
        with self._lock:
            row = self._db.execute(
                "SELECT upload_id, size, chunk_size FROM uploads WHERE destination=? AND folder=? AND relpath=?"
                " AND state IN ('sending', 'failed')",
                (self.destination, self.folder, relpath),
            ).fetchone()
        return tuple(row) if row else None  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            self._db.close()
