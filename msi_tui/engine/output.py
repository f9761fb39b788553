"""The output folder: staging, publishing under the final name, quarantine.

Nothing is ever written outside the output folder: every directory on the way to a file is
opened relative to its parent with O_NOFOLLOW, so a symlink planted anywhere in the tree is
refused rather than followed. A file appears under its final name only complete and
verified (hard link of the fsynced staged file, which also never replaces an existing
file). An existing file with other content is always kept. When both are versions of one
file of the same source (it was rewritten), the one modified last holds the name and the
other is kept beside it as `name (2).ext` (the source is kept in the extended attribute
`user.msi-tui.source`, the modification time is the source's). Otherwise, by default the
new file is saved beside it as `name (2).ext`; with the `rename-old` policy the older one
moves to that name and the new one takes the name.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from msi_tui.engine.digest import new_hasher
from msi_tui.engine.failures import UNEXPECTED_RETRIES, UploadFailure, classify, describe
from msi_tui.engine.liveness import held, hold
from msi_tui.engine.wire import MAX_NAME_BYTES, RESERVED_PREFIX, path_bytes

STAGING = RESERVED_PREFIX + "staging"
QUARANTINE = RESERVED_PREFIX + "quarantine"
# (flags missing on Windows read as 0 so that the module imports; the reconstructor needs POSIX)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_STAGED_FLAGS = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


SOURCE_XATTR = "user.msi-tui.source"
MAX_VERSIONS = 10_000
ConflictPolicy = Literal["keep-both", "rename-old"]
CONFLICT_POLICIES: tuple[str, ...] = ("keep-both", "rename-old")


@dataclass(frozen=True)
class Published:
    """Where a verified file went."""

    path: str  # relative path it now has
    duplicate: bool = False  # an identical file was already there: nothing changed
    older_kept_as: str | None = None  # where the different file that had the name went
    rewrite: bool = False  # that file and this one are versions of one file of one source
    other_source: str = ""  # otherwise: the source of the file that had the name ("" unknown)


@dataclass
class Staged:
    """A verified staged file on its way to its final name (see OutputFolder.publish)."""

    fd: int
    path: Path
    relpath: str  # the name it is to have
    upload_id: str
    digest: str
    algorithm: str
    size: int  # the declared size: the staged file is cut to it before it is synced
    source: str = ""  # the uploader's source name
    mtime_ns: int = 0  # the file's modification time at the source (0: unknown)
    synced: bool = False  # its bytes are on disk
    published: Published | None = None  # where it went
    quarantined: Path | None = None  # or where it was put aside instead, and why:
    refused: str = ""
    released: bool = False  # staged name gone, descriptor closed: nothing left to do
    failures: int = 0  # unexpected errors so far (see publish)


class UnsafePath(UploadFailure):
    """The way to a file's final name is blocked by a symlink or a non-directory."""


class OutputFolder:
    """Creates staged files and publishes them; thread safe.

    Staged files belong to one member: they are named `<member>.<upload id>.part`, and the
    member holds a lock on `<member>.lock` while it runs, so two reconstructors sharing a
    folder never touch each other's files, and the files of a member that was killed are
    recognised (its lock is free) and removed by the next one to start."""

    def __init__(self, root: Path, on_conflict: ConflictPolicy = "keep-both") -> None:
        self.root = root
        self.on_conflict = on_conflict
        self.member = secrets.token_hex(6)
        self._lock_fd: int | None = None

    def prepare(self) -> list[str]:
        """Create the folder, prove we can write there (raises OSError), take this member's
        lock and remove what dead members left staged; returns what was removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self._hidden_dir(STAGING)
        self._lock_fd = hold(staging / f"{self.member}.lock")
        return self._clean_leftovers(staging)

    def _clean_leftovers(self, staging: Path) -> list[str]:
        live: set[str] = {self.member}
        for lock in staging.glob("*.lock"):
            member = lock.name.removesuffix(".lock")
            if member == self.member:
                continue
            if held(lock):
                live.add(member)  # a running reconstructor's
            else:
                lock.unlink(missing_ok=True)  # a dead one's: its files go below
        for taking in staging.glob("*.taking"):  # (a member killed while it took its lock)
            if not held(taking):
                taking.unlink(missing_ok=True)
        removed = []
        for entry in staging.iterdir():
            member = entry.name.split(".", 1)[0]
            if entry.name.endswith(".part") and member not in live:
                removed.append(entry.name)
                entry.unlink(missing_ok=True)
        return removed

    def close(self) -> None:
        """Let go of this member's lock; the staging folder goes when nothing else is in it."""
        if self._lock_fd is None:
            return
        staging = self.root / STAGING
        (staging / f"{self.member}.lock").unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None
        try:
            os.rmdir(staging)
        except OSError:
            pass  # another member's files, or files of ours the next start cleans

    def _hidden_dir(self, name: str) -> Path:
        path = self.root / name
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if path.is_symlink() or not path.is_dir():
                raise UnsafePath(f"{name} in the output folder is not a plain folder") from None
        return path

    def open_staged(self, upload_id: str) -> tuple[int, Path]:
        """Create the staged file of an upload, empty; returns fd and path."""
        path = self.root / STAGING / f"{self.member}.{upload_id}.part"
        # (0o644 less the umask: the published file is this very inode; the staging folder
        # itself is 0o700, so nobody reads a partial file.)
        try:
            return os.open(path, _STAGED_FLAGS, 0o644), path
        except FileNotFoundError:  # the staging folder was removed under us: made again
            self._hidden_dir(STAGING)
            return os.open(path, _STAGED_FLAGS, 0o644), path

    @staticmethod
    def discard_staged(fd: int, path: Path) -> None:
        """Close and delete a staged file."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)

    def publish(self, files: list[Staged]) -> None:
        """Give verified staged files their final names, durably, as one batch.

        First every file's bytes go to disk (an fsync each), then each file is linked under
        its name, then each folder that got a name is synced once for the batch, not once a
        file. A file thus never shows under its name before its bytes are on disk.
        Never replaces a file silently (see _link); a file whose way is blocked by a symlink
        or a non-folder is quarantined instead (see refuse).

        Each file records how far it got, so after an error (disk full) calling this again
        with the same list carries on where it stopped.
        """
        todo = [f for f in files if not f.released]
        for f in todo:
            if not f.synced:
                self._per_file(f, self._sync)
        for f in todo:
            if not f.released and f.published is None:
                self._per_file(f, self._publish_one)
        folders = {PurePosixPath(f.published.path).parts[:-1] for f in todo if f.published is not None}
        for folder in folders:
            dir_fd = self._open_dirs(folder)
            try:
                os.fsync(dir_fd)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # (a filesystem that cannot sync folders)
                    raise
            finally:
                os.close(dir_fd)
        for f in todo:
            if not f.released:  # its name is durable now: the staged one can go
                self.discard_staged(f.fd, f.path)
                f.released = True

    @staticmethod
    def _sync(f: Staged) -> None:
        os.ftruncate(f.fd, f.size)  # exactly the bytes verified, whatever else was ever written there
        if f.mtime_ns:
            os.utime(f.fd, ns=(time.time_ns(), f.mtime_ns))
        if f.source:
            try:
                os.setxattr(f.fd, SOURCE_XATTR, f.source.encode())
            except OSError:
                pass  # a file system without user attributes: versions are then kept side by side
        os.fsync(f.fd)
        f.synced = True

    def _publish_one(self, f: Staged) -> None:
        f.published = self._link(f)

    def _per_file(self, f: Staged, step: Callable[[Staged], None]) -> None:
        """Run one file's step. A failure that only that file has (its name, what is in its
        way, or an unexpected error seen too often) quarantines the file; a transient one is
        raised, so the caller waits and calls publish again."""
        try:
            step(f)
        except Exception as exc:
            failure = classify(exc)
            if failure == "unexpected":
                f.failures += 1
                if f.failures <= UNEXPECTED_RETRIES:
                    raise
            elif failure == "transient":
                raise
            self.refuse(f, f"cannot be saved under its name: {describe(exc)}")

    def refuse(self, f: Staged, reason: str) -> None:
        """Quarantine a staged file instead of publishing it, saying why."""
        f.quarantined = self.quarantine(f.fd, f.path, f.relpath, f.upload_id)
        f.refused = reason
        f.released = True

    def _link(self, f: Staged) -> Published:
        """Link the staged file under its name, or under a numbered one beside a different
        file (see the module's docstring for which of the two keeps the name); an identical
        file already there makes it a duplicate. Raises UnsafePath when a symlink or a file
        blocks the way."""
        parts = PurePosixPath(f.relpath).parts
        folder, name = parts[:-1], parts[-1]
        dir_fd = self._open_dirs(folder)
        try:
            rewrite, other_source, newer = False, "", self.on_conflict == "rename-old"
            for attempt in range(1, MAX_VERSIONS):
                candidate = name if attempt == 1 else _numbered(name, attempt)
                try:
                    os.link(f.path, candidate, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    if _same_content(dir_fd, candidate, f.digest, f.algorithm):
                        return Published(_join(folder, candidate), duplicate=True)
                    if attempt == 1 and _is_file(dir_fd, name):
                        other_source, their_mtime = _origin(dir_fd, name)
                        rewrite = bool(f.source) and other_source == f.source
                        if rewrite:
                            newer = f.mtime_ns >= their_mtime
                        if newer:
                            kept = self._displace(dir_fd, name)
                            os.rename(f.path, name, dst_dir_fd=dir_fd)  # atomic: name is never missing
                            return Published(_join(folder, name), older_kept_as=_join(folder, kept),
                                             rewrite=rewrite, other_source=other_source)
                    continue
                return Published(_join(folder, candidate), rewrite=rewrite, other_source=other_source)
            raise UnsafePath(f"too many files named like {f.relpath}")
        finally:
            os.close(dir_fd)

    def make_folder(self, relpath: str) -> None:
        """Create the folder `relpath` (and those on the way) if missing."""
        os.close(self._open_dirs(PurePosixPath(relpath).parts))

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
        """Move a staged file that failed verification aside, never into the output: named by
        its upload id, then as much of its path as a name can hold."""
        name = _fit(f"{upload_id}.{relpath.replace('/', '__')}", MAX_NAME_BYTES)
        target = self._hidden_dir(QUARANTINE) / name
        os.rename(staged, target)
        os.close(fd)
        return target


def _fit(name: str, limit: int) -> str:
    """`name` cut (at a character boundary) to at most `limit` bytes on disk."""
    while len(path_bytes(name)) > limit:
        name = name[:-1]
    return name


def _numbered(name: str, n: int) -> str:
    """`name (n).ext`, its stem shortened where the whole would be over a name's limit."""
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    suffix = f" ({n}){dot}{ext}"
    return _fit(stem, MAX_NAME_BYTES - len(path_bytes(suffix))) + suffix


def _is_file(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _peek(dir_fd: int, name: str) -> int | None:
    """A descriptor for reading whatever stands at `name`, or None when nothing can be opened
    there: a link is not followed and a FIFO does not block the open."""
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None


def _origin(dir_fd: int, name: str) -> tuple[str, int]:
    """The source that sent file `name` ("" when unknown) and its modification time."""
    fd = _peek(dir_fd, name)
    if fd is None:
        return "", 0
    try:
        mtime_ns = os.fstat(fd).st_mtime_ns
        try:
            source = os.getxattr(fd, SOURCE_XATTR).decode("utf-8", "replace")
        except OSError:
            source = ""
        return source, mtime_ns
    finally:
        os.close(fd)


def _join(dirs: tuple[str, ...], name: str) -> str:
    return "/".join((*dirs, name))


def _same_content(dir_fd: int, name: str, digest: str, algorithm: str) -> bool:
    """Whether a regular file `name` holds exactly these bytes (a folder, a link, a FIFO or a
    device is never the same)."""
    fd = _peek(dir_fd, name)
    if fd is None:
        return False
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return False
    hasher = new_hasher(algorithm)
    with os.fdopen(fd, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest() == digest


def allow_open_files() -> None:
    """Raise the soft limit on open files to the hard one: every upload being rebuilt holds
    its staged file open, and a busy topic can have thousands at once."""
    if sys.platform == "win32":
        return  # (no such limit there; imported here so that the module imports everywhere)
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass  # the limit stays; running out is a transient failure (see msi_tui.engine.failures)
