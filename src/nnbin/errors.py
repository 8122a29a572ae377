"""The exceptions nnbin raises, all here, all under NnbinError (each also the built-in
exception that says what kind of problem it is). Each carries one line that says what to do."""

from __future__ import annotations

from typing import Any


class NnbinError(Exception):
    """Base class of every error nnbin raises on purpose."""


class UnknownBackendError(NnbinError, ValueError):
    """``NNBIN_BACKEND`` (or ``backend=``) names no registered backend."""


class BackendUnavailableError(NnbinError, RuntimeError):
    """A registered backend cannot run here: its package is missing or it has no device."""


class TrainingDivergedError(NnbinError, FloatingPointError):
    """The loss became NaN or infinite. ``params`` holds the last parameters whose loss was
    finite (recorded at ``last_finite_step``); they are never written to a model file."""

    def __init__(
        self, message: str, *, step: int, lr: float, params: object, last_finite_step: int
    ) -> None:
        super().__init__(message)
        self.step, self.lr, self.params = step, lr, params
        self.last_finite_step = last_finite_step


class MixedArraysError(NnbinError, TypeError):
    """Arrays from two libraries (or devices) were passed together; nnbin never copies silently."""


class InvalidInputError(NnbinError, ValueError):
    """An argument nnbin cannot train or predict on; the message says what to do."""


class DataFileError(NnbinError, ValueError):
    """A data file nnbin cannot read; the message says why and what to do."""


class ModelFileError(NnbinError, ValueError):
    """A model file that cannot be read as an nnbin model; the message says why."""


class MissingDependencyError(NnbinError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra."""


class UnsafeOutputError(NnbinError, OSError):
    """An output path nnbin will not write (not a regular file, or one of the command's own
    inputs); the message says why."""


class UnsafeInputError(NnbinError, OSError):
    """An input path nnbin will not read (not a regular file: a FIFO or a device would hang
    or never end); the message says why."""


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` at the first frame outside nnbin: the line of the caller's code
    that called into nnbin (not a decorator's wrapper or a helper several calls deep)."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and _ours(frame):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _ours(frame: Any) -> bool:
    return str(frame.f_globals.get("__name__", "")).partition(".")[0] in (
        "nnbin",
        "nnbin_backends",
    )
