"""The exceptions nnbin raises. Each carries one line that says what to do."""

from __future__ import annotations


class NnbinError(Exception):
    """Base class of every error nnbin raises on purpose."""


class UnknownBackendError(NnbinError, ValueError):
    """``NNBIN_BACKEND`` (or ``backend=``) names no registered backend."""


class BackendUnavailableError(NnbinError, RuntimeError):
    """A registered backend cannot run here: its package is missing or it has no device."""


class MixedArraysError(NnbinError, TypeError):
    """Arrays from two libraries (or devices) were passed together; nnbin never copies silently."""
