"""What the uploader has sent, kept in SQLite in the user state dir.

A restart must neither re-send finished, unchanged files nor forget half-sent ones: a file
is `done` only once every chunk was acknowledged, and only with the size and mtime it had
when it was read. The registry lives outside the watched folder so it is never uploaded.

Every upload, watched or given by hand, is also written down under its id before its first
chunk goes out (table `sends`), with what its `abort` record needs: a reconstructor holds an
unfinished upload's staged file and its partition's committed offset until the upload ends,
so one the uploader never finished (it was killed, or its abort could not be delivered) is
withdrawn at the next start. Each registry holds a lock file for as long as it is open, so
a start withdraws only uploads whose uploader is gone, never those of one still running.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from msi_tui.engine.digest import DEFAULT as DEFAULT_DIGEST
from msi_tui.engine.digest import Algorithm
from msi_tui.engine.events import Notice, Sink
from msi_tui.engine.liveness import held, hold
from msi_tui.engine.sqlite_files import open_db
from msi_tui.errors import OperatorError

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
# Schema version 1 (PRAGMA user_version): one row per upload, `state` sending, done or
# withdrawn; `owner` names the lock file of the registry that sends it.
SENDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (
    upload_id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    updated REAL NOT NULL
)
"""
# Version 0 kept an unfinished upload only in `uploads` (states sending and failed), without
# its digest: it is taken over as one of the default digest, which is what that version's
# own abort records carried.
MIGRATE_0_TO_1 = f"""
INSERT OR IGNORE INTO sends
SELECT upload_id, destination, relpath, size, chunk_size, '{DEFAULT_DIGEST}', '', 'sending', updated
FROM uploads WHERE state IN ('sending', 'failed')
"""
# Version 2: what a restart needs to find an upload on the topic (its partition, when it
# began) and what the source clean-up needs (the folder, the version sent), and where a
# receipt says the file is. States: sending, ending (its end record was produced), done,
# withdrawn, verified, failed-there.
MIGRATE_1_TO_2 = [
    "ALTER TABLE sends ADD COLUMN mtime_ns INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sends ADD COLUMN folder TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE sends ADD COLUMN partition INTEGER NOT NULL DEFAULT -1",
    "ALTER TABLE sends ADD COLUMN began REAL NOT NULL DEFAULT 0",
    "ALTER TABLE sends ADD COLUMN saved_as TEXT NOT NULL DEFAULT ''",
]
FOLDER_SIZE = -1  # an `uploads` row with this size is a folder (its dir record was delivered)
KEEP_FINISHED_S = 7 * 86400  # finished sends are forgotten after a week
OWNER_SWEEP_AGE_S = 3600.0
_OWNER = re.compile(r"[0-9a-f]{32}")


class Unfinished(NamedTuple):
    """An upload that was started and neither completed nor withdrawn."""

    upload_id: str
    relpath: str
    size: int
    chunk_size: int
    digest: Algorithm
    state: str  # sending, or ending: its end record was produced and may be on the topic
    partition: int
    began: float  # time.time() when its first record was about to be produced
    mtime_ns: int
    folder: str


class Sent(NamedTuple):
    """A delivered upload of a watched file that no receipt has settled yet."""

    upload_id: str
    relpath: str
    size: int
    mtime_ns: int
    delivered: float  # time.time()


def _key(relpath: str) -> str | bytes:
    """A relative path as SQLite can hold it: a name that is not UTF-8 as its bytes (a BLOB,
    never equal to any text)."""
    try:
        relpath.encode("utf-8")
        return relpath
    except UnicodeEncodeError:
        return relpath.encode("utf-8", "surrogateescape")


def _path(key: str | bytes) -> str:
    return key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key


class Registry:
    """Thread-safe record of uploads per (destination, folder, relative path), and of every
    upload to `destination` by id. `folder` is None for files given by hand."""

    def __init__(self, db_path: Path, destination: str, folder: Path | None, sink: Sink) -> None:
        self.destination = destination
        self.folder = str(folder.resolve()) if folder is not None else ""
        self._lock = threading.Lock()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._owners = db_path.with_name(db_path.name + ".owners")
        self._owners.mkdir(exist_ok=True)
        self.owner = uuid.uuid4().hex
        self._owner_fd = hold(self._owners / self.owner)  # until close, or until the process dies
        self._sweep_owners()
        self._db = self._open(db_path, sink)

    @classmethod
    def open(cls, db_path: Path, destination: str, folder: Path | None, sink: Sink) -> Registry:
        """The registry in `db_path`, or an OperatorError saying why it cannot be opened."""
        try:
            return cls(db_path, destination, folder, sink)
        except (OSError, sqlite3.Error) as exc:
            raise OperatorError(f"cannot open the upload registry {db_path}: {exc}") from None

    @staticmethod
    def _open(db_path: Path, sink: Sink) -> sqlite3.Connection:
        # A damaged registry must never become a crash loop: kept aside, started afresh.
        db, aside = open_db(db_path, Registry._create)
        if aside is not None:
            sink(Notice(level="warning", at=time.time(), message=(
                f"upload registry was unreadable; kept as {aside.name}, files will be re-sent")))
        db.execute("DELETE FROM sends WHERE state NOT IN ('sending', 'ending') AND updated < ?",
                   (time.time() - KEEP_FINISHED_S,))
        return db

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        db.execute(SCHEMA)
        db.execute("SELECT count(*) FROM uploads").fetchone()  # (a file that is not a database fails here)
        db.execute("BEGIN IMMEDIATE")  # two uploaders starting at once migrate once
        try:
            db.execute(SENDS_SCHEMA)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < 1:
                db.execute(MIGRATE_0_TO_1)
            if version < 2:
                for statement in MIGRATE_1_TO_2:
                    db.execute(statement)
                db.execute("PRAGMA user_version = 2")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- files of a watched folder ------------------------------------------------------

    def is_done(self, relpath: str, size: int, mtime_ns: int) -> bool:
        """True when this exact version of the file was fully acknowledged before."""
        with self._lock:
            row: tuple[int, int, str] | None = self._db.execute(
                "SELECT size, mtime_ns, state FROM uploads WHERE destination=? AND folder=? AND relpath=?",
                (self.destination, self.folder, _key(relpath)),
            ).fetchone()
        return row == (size, mtime_ns, "done")

    def mark(self, relpath: str, size: int, mtime_ns: int, upload_id: str, chunk_size: int, state: str,
             folder: str | None = None) -> None:
        """This version of a watched file (of `folder`, this registry's by default) was sent."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.destination, self.folder if folder is None else folder, _key(relpath), size, mtime_ns,
                 upload_id, chunk_size, state, time.time()),
            )

    # --- every upload, by id ------------------------------------------------------------

    def begin(self, upload_id: str, relpath: str, size: int, mtime_ns: int, chunk_size: int, digest: Algorithm,
              partition: int, watched: bool) -> None:
        """Write an upload down before its first chunk is produced."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO sends (upload_id, destination, relpath, size, chunk_size, digest, owner, state,"
                " updated, mtime_ns, folder, partition, began) VALUES (?, ?, ?, ?, ?, ?, ?, 'sending', ?, ?, ?, ?, ?)",
                (upload_id, self.destination, _key(relpath), size, chunk_size, digest, self.owner, now, mtime_ns,
                 self.folder if watched else "", partition, now),
            )

    def finish(self, upload_id: str, state: str, saved_as: str = "") -> None:
        """`ending` (its end record is being produced), `done` (every record acknowledged),
        `withdrawn` (its abort acknowledged), or what a receipt said: `verified` (with where
        it is) or `failed-there`."""
        with self._lock:
            self._db.execute("UPDATE sends SET state=?, updated=?, saved_as=? WHERE upload_id=?",
                             (state, time.time(), saved_as, upload_id))

    def awaiting_receipt(self) -> list[Sent]:
        """Delivered uploads of this registry's folder that no receipt has settled yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT upload_id, relpath, size, mtime_ns, updated FROM sends"
                " WHERE destination=? AND folder=? AND folder != '' AND state='done'",
                (self.destination, self.folder),
            ).fetchall()
        return [Sent(uid, _path(rel), size, mtime_ns, at) for uid, rel, size, mtime_ns, at in rows]

    def take_over_unfinished(self) -> list[Unfinished]:
        """The unfinished uploads to this destination whose uploader is gone, made this
        registry's own (so two uploaders starting at once do not both withdraw them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT upload_id, relpath, size, chunk_size, digest, state, partition, began, mtime_ns, folder, owner"
                " FROM sends WHERE destination=? AND state IN ('sending', 'ending') AND owner != ?",
                (self.destination, self.owner),
            ).fetchall()
            taken: list[Unfinished] = []
            gone: set[str] = set()
            for *fields, owner in rows:
                if owner not in gone and self._alive(owner):
                    continue
                gone.add(owner)
                claimed = self._db.execute("UPDATE sends SET owner=? WHERE upload_id=? AND owner=?",
                                           (self.owner, fields[0], owner)).rowcount
                if claimed:
                    uid, rel, *rest = fields
                    taken.append(Unfinished(uid, _path(rel), *rest))
        for owner in gone:  # those uploaders are gone and their rows ours: their lock files go too
            if _OWNER.fullmatch(owner):
                (self._owners / owner).unlink(missing_ok=True)
        return taken

    def _alive(self, owner: str) -> bool:
        """Whether the registry `owner` is still open, in this process or another."""
        return bool(_OWNER.fullmatch(owner)) and held(self._owners / owner)

    def _sweep_owners(self) -> None:
        """Remove the lock files of uploaders killed with nothing unfinished. Only old ones:
        a registry opening creates its file a moment before it locks it."""
        cutoff = time.time() - OWNER_SWEEP_AGE_S
        for path in self._owners.iterdir():
            try:
                if path.stat().st_mtime < cutoff and not self._alive(path.name):
                    path.unlink(missing_ok=True)
            except OSError:
                continue  # gone meanwhile, or not ours to remove

    def close(self) -> None:
        with self._lock:
            self._db.close()
            (self._owners / self.owner).unlink(missing_ok=True)
            os.close(self._owner_fd)
