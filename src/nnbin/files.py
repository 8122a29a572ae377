"""Every file nnbin writes (figures, models, CSV, JSON) goes through here.

Rules, for a tool that may run as root:
- only regular files are written: a path that exists as anything else (a device such as
  /dev/null or /dev/stdout, a FIFO, a socket, a folder) is refused, never replaced;
- a symbolic link is written *through*: the regular file it points to is replaced, the link
  stays (a link to anything but a regular file, or a dangling one, is refused);
- writing is atomic: a temporary file in the same folder, renamed over the target, so
  readers see the old file or the new one and an interrupted write (an exception, Ctrl-C,
  SIGTERM) leaves the old file as it was and no temporary file behind;
- an existing file keeps its permission bits; a new one gets 0666 less the umask;
- errors name the path the user gave, never the temporary file.

And every file nnbin reads is checked first to be a regular file (:func:`input_size`): a
FIFO or a device given as an input would otherwise hang or never end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import IO

from .errors import UnsafeInputError, UnsafeOutputError


def _kind(mode: int) -> str:
    """What a path that is not a regular file is, for an error message."""
    return (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "not a regular file"
    )


def output_target(path: str | os.PathLike[str]) -> str:
    """The regular file that writing ``path`` replaces (``path`` itself, or where its
    symbolic links lead), checked: its folder exists, and it is a regular file or absent.
    Raises UnsafeOutputError (an OSError) naming ``path``."""
    name = os.fspath(path)
    if name == "":
        raise UnsafeOutputError("an output path is empty: give a file name")
    target = os.path.realpath(name)
    if os.path.islink(name) and not os.path.lexists(target):
        raise UnsafeOutputError(
            f"{name} is a symbolic link to {target}, which does not "
            "exist: nnbin writes through links only to existing files"
        )
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = _kind(st.st_mode)
        where = name if target == os.path.abspath(name) else f"{name} (-> {target})"
        raise UnsafeOutputError(
            f"{where} is {kind}: nnbin writes only regular files; give a file name"
        )
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise UnsafeOutputError(
            f"cannot write {name}: the folder {os.path.dirname(name) or '.'} does not exist"
        )
    return target


def check_outputs(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Before any work: every output (``{"--save": path, ...}``; None: not asked for) can
    be written (see :func:`output_target`), no two outputs are one file, and no output is
    one of the inputs — compared as the files they resolve to, through links and ``..``.
    Raises UnsafeOutputError naming the options."""
    seen: dict[str, str] = {}
    for option, path in inputs.items():
        if path:
            seen[os.path.realpath(path)] = f"{option} {path}"
    taken: dict[str, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        target = output_target(path)
        here = f"{option} {path}"
        if target in seen:
            raise UnsafeOutputError(
                f"{here} would overwrite the input {seen[target]}: write to another file"
            )
        if target in taken:
            raise UnsafeOutputError(
                f"{here} and {taken[target]} are the same file: give each output its own name"
            )
        taken[target] = here


def input_size(path: str | os.PathLike[str]) -> int:
    """The size of the regular file ``path`` (through links), checked without blocking: a
    FIFO, a device (``/dev/zero``), a socket or a folder is refused at once (reading one
    would hang or never end). Raises UnsafeInputError, or FileNotFoundError."""
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO does not wait
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeInputError(f"{name} is {_kind(st.st_mode)}: nnbin reads only regular files")
    return int(st.st_size)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while a file is written (main thread only), so the
    cleanup below runs for it as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not possible here (an embedded interpreter, say)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *, durable: bool = False
) -> None:
    """Write ``path`` by the rules above: ``write(fh)`` fills a temporary file that then
    replaces the target. ``durable`` also flushes the data to disk before the rename."""
    name = os.fspath(path)
    target = output_target(name)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    tmp: str | None = None
    with _terminate_as_interrupt():
        try:
            fd, tmp = tempfile.mkstemp(prefix=".nnbin-", suffix=".tmp", dir=os.path.dirname(target))
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
            tmp = None
        except OSError as exc:
            if isinstance(exc, UnsafeOutputError):
                raise
            if exc.errno is None:
                raise OSError(f"cannot write {name}: {exc}") from None
            raise OSError(exc.errno, f"cannot write {name}: {exc.strerror or exc}") from None
        finally:
            if tmp is not None and os.path.lexists(tmp):
                os.unlink(tmp)
