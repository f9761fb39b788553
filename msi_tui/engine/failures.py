"""Which failures wait and which end one upload (docs/architecture.md, "Failure classes").

Transient: the output side refuses for now (disk full, quota, permission, read-only
filesystem, an I/O error, no memory, no file descriptors). The partition waits, says why,
and goes on by itself once the step succeeds: nothing is skipped.

One upload's: no retry can cure it (a name the filesystem refuses, a folder, a link or a
special file where the file must go, a record that contradicts its upload). That upload is
quarantined or refused with one message, and the partition moves on.

Anything else is unexpected: it is retried a few times (a database locked for a moment),
then treated as the upload's, so no unknown error holds a partition for ever.
"""

from __future__ import annotations

import errno
from typing import Literal

from msi_tui.engine.wire import WireError

Failure = Literal["transient", "upload", "unexpected"]
UNEXPECTED_RETRIES = 3

TRANSIENT_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ENOMEM,
    errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE, errno.EINTR,
})
UPLOAD_ERRNOS = frozenset({
    errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.EINVAL, errno.EILSEQ,
    errno.EFBIG, errno.ENXIO, errno.EEXIST, errno.ETXTBSY, errno.EOVERFLOW, errno.EMLINK,
})


class UploadFailure(Exception):
    """A failure that belongs to one upload (see UnsafePath in msi_tui.engine.output)."""


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, (UploadFailure, WireError)):
        return "upload"
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in TRANSIENT_ERRNOS:
            return "transient"
        if exc.errno in UPLOAD_ERRNOS:
            return "upload"
    return "unexpected"


def describe(exc: BaseException) -> str:
    """One line for the operator: the system's words where there are some."""
    if isinstance(exc, OSError) and exc.strerror:
        name = f" ({exc.filename})" if isinstance(exc.filename, str) else ""
        return f"{exc.strerror}{name}"
    return str(exc) or type(exc).__name__
