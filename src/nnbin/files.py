"""Atomic file writes: every file nnbin writes (figures, models, CSV, JSON) goes through here."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object],
                 *, durable: bool = False) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it over
    ``path``: readers see the old file or the new one, never half of one, and an
    interrupted write leaves the old file intact. ``durable`` also flushes the data to
    disk before the rename. The new file gets the usual permissions (0666 less the umask),
    not the private ones of a temporary file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnbin-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
