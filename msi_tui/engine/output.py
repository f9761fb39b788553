"""The output folder: staging, publishing under the final name, quarantine.

Nothing is ever written outside the output folder: every directory on the way to a file is
opened relative to its parent with O_NOFOLLOW, so a symlink planted anywhere in the tree is
refused rather than followed. A file appears under its final name only complete and
verified (hard link of the fsynced staged file, which also never replaces an existing
file). An existing file with other content is always kept: by default the new file is
saved beside it as `name (2).ext`; with the `rename-old` policy the older one moves to
that name and the new one takes the name.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from msi_tui.engine.assembly import release_cache
from msi_tui.engine.digest import new_hasher

STAGING = ".msi-tui-staging"
QUARANTINE = ".msi-tui-quarantine"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


MAX_VERSIONS = 10_000
ConflictPolicy = Literal["keep-both", "rename-old"]
CONFLICT_POLICIES: tuple[str, ...] = ("keep-both", "rename-old")


@dataclass(frozen=True)
class Published:
    """Where a verified file went."""

    path: str  # relative path it now has
    duplicate: bool = False  # an identical file was already there: nothing changed
    older_kept_as: str | None = None  # rename-old: where the different older file went


@dataclass
class Staged:
    """A verified staged file on its way to its final name (see OutputFolder.publish)."""

    fd: int
    path: Path
    relpath: str  # the name it is to have
    upload_id: str
    digest: str
    algorithm: str
    synced: bool = False  # its bytes are on disk
    published: Published | None = None  # where it went
    quarantined: Path | None = None  # or where it was put aside instead, and why:
    refused: str = ""
    released: bool = False  # staged name gone, descriptor closed: nothing left to do


class UnsafePath(Exception):
    """The way to a file's final name is blocked by a symlink or a non-directory."""


class OutputFolder:
    """Creates staged files and publishes them; thread safe."""

    def __init__(self, root: Path, on_conflict: ConflictPolicy = "keep-both") -> None:
        self.root = root
        self.on_conflict = on_conflict
        self._lock = threading.Lock()
        self._open_staged = 0

    def prepare(self) -> None:
        """Create the folder and prove we can write there (raises OSError)."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f"{STAGING}.probe"
        probe.write_bytes(b"")
        probe.unlink()

    def _hidden_dir(self, name: str) -> Path:
        path = self.root / name
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if path.is_symlink() or not path.is_dir():
                raise UnsafePath(f"{name} in the output folder is not a plain folder") from None
        return path

    def open_staged(self, upload_id: str) -> tuple[int, Path]:
        """Open (creating if needed) the staged file of an upload; returns fd and path."""
        # Only the count and the staging folder's coming and going are under the lock: with
        # the file's own open and close inside it, five rebuilding threads queued on it.
        with self._lock:
            staging = self.root / STAGING if self._open_staged else self._hidden_dir(STAGING)  # (checked when made)
            self._open_staged += 1
        path = staging / f"{upload_id}.part"
        try:
            # (0o644 less the umask: the published file is this very inode; the staging
            # folder itself is 0o700, so nobody reads a partial file.)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), path
        except BaseException:
            self._leave_staging(staging)
            raise

    def discard_staged(self, fd: int, path: Path) -> None:
        """Close and delete a staged file; the staging folder goes once it is empty."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self._release(fd, path.parent)

    def _release(self, fd: int, staging: Path) -> None:
        os.close(fd)
        self._leave_staging(staging)

    def _leave_staging(self, staging: Path) -> None:
        with self._lock:
            self._open_staged -= 1
            if self._open_staged == 0:
                try:
                    os.rmdir(staging)
                except OSError:
                    pass  # something else is in there (an earlier run's leftovers): keep it

    def publish(self, files: list[Staged]) -> None:
        """Give verified staged files their final names, durably, as one batch.

        First every file's bytes go to disk (an fsync each; the reconstructor started their
        writeback as each file completed, see Assembly.seal), then each file is linked
        under its name, then each folder that got a name is synced once for the batch, not
        once a file. A file thus never shows under its name before its bytes are on disk.
        Never replaces a file silently (see _link); a file whose way is blocked by a symlink
        or a non-folder is quarantined instead (see refuse).

        Each file records how far it got, so after an error (disk full) calling this again
        with the same list carries on where it stopped.
        """
        todo = [f for f in files if not f.released]
        for f in todo:
            if not f.synced:
                os.fsync(f.fd)
                release_cache(f.fd)  # on disk since the fsync: its pages go back to the system
                f.synced = True
        for f in todo:
            if f.published is None and f.quarantined is None:
                try:
                    f.published = self._link(f)
                except UnsafePath as exc:
                    self.refuse(f, str(exc))
        folders = {PurePosixPath(f.published.path).parts[:-1] for f in todo if f.published is not None}
        for folder in folders:
            dir_fd = self._open_dirs(folder)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        for f in todo:
            if not f.released:  # its name is durable now: the staged one can go
                self.discard_staged(f.fd, f.path)
                f.released = True

    def refuse(self, f: Staged, reason: str) -> None:
        """Quarantine a staged file instead of publishing it, saying why."""
        f.quarantined = self.quarantine(f.fd, f.path, f.relpath, f.upload_id)
        f.refused = reason
        f.released = True

    def _link(self, f: Staged) -> Published:
        """Link the staged file under its name, or under a numbered one beside a different
        file (rename-old: move that one to a numbered name); an identical file already
        there makes it a duplicate. Raises UnsafePath when a symlink or a file blocks the way."""
        parts = PurePosixPath(f.relpath).parts
        folder, name = parts[:-1], parts[-1]
        dir_fd = self._open_dirs(folder)
        try:
            for attempt in range(1, MAX_VERSIONS):
                candidate = name if attempt == 1 else _numbered(name, attempt)
                try:
                    os.link(f.path, candidate, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    if _same_content(dir_fd, candidate, f.digest, f.algorithm):
                        return Published(_join(folder, candidate), duplicate=True)
                    if attempt == 1 and self.on_conflict == "rename-old":
                        kept = self._displace(dir_fd, name)
                        os.rename(f.path, name, dst_dir_fd=dir_fd)  # atomic: name is never missing
                        return Published(_join(folder, name), older_kept_as=_join(folder, kept))
                    continue
                return Published(_join(folder, candidate))
            raise UnsafePath(f"too many files named like {f.relpath}")
        finally:
            os.close(dir_fd)

    @staticmethod
    def _displace(dir_fd: int, name: str) -> str:
        """Give the existing file a numbered name too (a second link); returns that name."""
        for attempt in range(2, MAX_VERSIONS):
            candidate = _numbered(name, attempt)
            try:
                os.link(name, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                return candidate
            except FileExistsError:
                continue
        raise UnsafePath(f"too many files named like {name}")

    def _open_dirs(self, parts: tuple[str, ...]) -> int:
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafePath(f"{part!r} on the way to the file is a symlink or not a folder") from None
                    raise
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def quarantine(self, fd: int, staged: Path, relpath: str, upload_id: str) -> Path:
        """Move a staged file that failed verification aside, never into the output."""
        target = self._hidden_dir(QUARANTINE) / f"{relpath.replace('/', '__')}.{upload_id}"
        os.rename(staged, target)
        self._release(fd, staged.parent)
        return target


def _numbered(name: str, n: int) -> str:
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    return f"{stem} ({n}){dot}{ext}"


def _join(dirs: tuple[str, ...], name: str) -> str:
    return "/".join((*dirs, name))


def _same_content(dir_fd: int, name: str, digest: str, algorithm: str) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return False
    hasher = new_hasher(algorithm)
    with os.fdopen(fd, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest() == digest
