"""Uploads this reconstructor already published, so a replay does not rebuild them.

Offsets are committed conservatively, so after a crash or rebalance records of finished
uploads come again; the journal (SQLite in the user state dir) lets us skip them cheaply.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from msi_tui.engine.sqlite_files import open_db

KEEP_DAYS = 30


class Journal:
    def __init__(self, db_path: Path, output_dir: Path, group_id: str) -> None:
        # Keyed by group too: a replay within a group is skipped, while a new group id is
        # how an operator asks for the topic to be rebuilt from the start.
        self.output = f"{output_dir.resolve()}\n{group_id}"
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, float]] = {}  # added, not yet written (see flush)
        # Losing the journal only costs re-verifying replays; never a reason to stop.
        self._db, _aside = open_db(db_path, self._create)

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS published (output TEXT, upload_id TEXT, path TEXT, at REAL,"
            " PRIMARY KEY (output, upload_id))"
        )
        db.execute("DELETE FROM published WHERE at < ?", (time.time() - KEEP_DAYS * 86400,))

    def seen(self, upload_id: str) -> bool:
        with self._lock:
            if upload_id in self._pending:
                return True
            row = self._db.execute(
                "SELECT 1 FROM published WHERE output=? AND upload_id=?", (self.output, upload_id)
            ).fetchone()
        return row is not None

    def add(self, upload_id: str, path: str) -> None:
        """Remember a published upload; written at the next flush."""
        with self._lock:
            self._pending[upload_id] = (path, time.time())

    def flush(self) -> None:
        """Write what was added in one transaction (one per file cost five writes and eight
        locks in SQLite; a rebuilding thread flushes once per batch of records)."""
        with self._lock:
            if not self._pending:
                return
            rows = [(self.output, uid, path, at) for uid, (path, at) in self._pending.items()]
            self._pending.clear()
            try:
                self._db.execute("BEGIN")  # (an autocommit connection: one explicit transaction)
                self._db.executemany("INSERT OR REPLACE INTO published VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                # Not fatal: a replay of these uploads finds the identical files already there.

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()
