"""Validation at the API boundary, in one place, done once before training starts.

Nothing here runs inside the training loop: the checks that need the data's values (NaN,
labels) are one reduction each, evaluated once up front, so a GPU backend synchronises
once, not per step.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import array_api_compat

from .errors import InvalidInputError, MixedArraysError


def _kind(a: Any) -> str:
    return f"{type(a).__module__.split('.')[0]}.{type(a).__qualname__}"


def hyperparameters(*, hidden: Any, lr: Any, steps: Any, log_every: Any) -> tuple[int, float,
                                                                                 int, int]:
    """hidden >= 1, lr > 0 and finite, steps >= 0, log_every >= 0, as Python numbers."""
    def whole(name: str, v: Any, least: int) -> int:
        if isinstance(v, bool) or (not isinstance(v, int) and not (
                hasattr(v, "__index__") and not hasattr(v, "shape"))):
            raise InvalidInputError(f"{name} must be a whole number >= {least}, got {v!r}")
        v = int(v)
        if v < least:
            raise InvalidInputError(f"{name} must be >= {least}, got {v}")
        return v

    hidden = whole("hidden", hidden, 1)
    steps = whole("steps", steps, 0)
    log_every = whole("log_every", log_every, 0)
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise InvalidInputError(f"lr must be a number, got {lr!r}") from None
    if not (math.isfinite(lr) and lr > 0):
        raise InvalidInputError(f"lr must be a finite number > 0, got {lr}")
    return hidden, lr, steps, log_every


def same_library(X: Any, y: Any) -> None:
    """X and y come from one library and one device; else one error naming both."""
    try:
        array_api_compat.array_namespace(X, y)
    except TypeError:
        raise MixedArraysError(
            f"X is a {_kind(X)} but y is a {_kind(y)}; nnbin never copies between "
            "libraries: convert both to one library first"
        ) from None
    dx, dy = array_api_compat.device(X), array_api_compat.device(y)
    if dx != dy and dx is not None and dy is not None:
        raise MixedArraysError(f"X is on {dx} but y is on {dy}: move them to one device first")


def training_data(X: Any, y: Any) -> tuple[Any, Any]:
    """Check X (N, D) and y (N, 1) or (N,) with labels 0/1, both classes, finite values.

    Returns X and y with y as (N, 1); integer or boolean data are converted to the
    default floating dtype with a warning (a note, not an error).
    """
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise InvalidInputError(f"X must be an array, got {type(X).__name__}; "
                                "use numpy.asarray(X)")
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise InvalidInputError(f"y must be an array, got {type(y).__name__}; "
                                "use numpy.asarray(y)")
    same_library(X, y)
    xp = array_api_compat.array_namespace(X, y)
    if X.ndim == 1:
        raise InvalidInputError(
            f"X must be 2-D (samples, features), got shape {tuple(X.shape)}; for one feature "
            "use X.reshape(-1, 1) (or X[:, None])")
    if X.ndim != 2:
        raise InvalidInputError(f"X must be 2-D (samples, features), got shape "
                                f"{tuple(X.shape)}")
    n = X.shape[0]
    if n == 0 or X.shape[1] == 0:
        raise InvalidInputError(f"X has shape {tuple(X.shape)}: at least one sample and one "
                                "feature are needed")
    if y.ndim == 1:
        y = xp.reshape(y, (-1, 1))
    if y.ndim != 2 or y.shape[1] != 1:
        raise InvalidInputError(f"y must have shape (N,) or (N, 1), got {tuple(y.shape)}")
    if y.shape[0] != n:
        raise InvalidInputError(f"X has {n} rows but y has {y.shape[0]}: one label per sample")
    X = _floating(xp, X, "X")
    y = _floating(xp, y, "y")
    # One reduction per check, evaluated once (a single host synchronisation on GPUs).
    if not bool(xp.all(xp.isfinite(X))):
        raise InvalidInputError("X contains NaN or infinite values; remove or impute them")
    if not bool(xp.all((y == 0.0) | (y == 1.0))):
        raise InvalidInputError(
            "y must hold only the labels 0 and 1 (for other labels use "
            "nnbin.BinaryMLPClassifier, which maps any two labels)")
    has_one = bool(xp.any(y == 1.0))
    if not (has_one and bool(xp.any(y == 0.0))):
        raise InvalidInputError(
            f"y has only label {int(has_one)}: training needs samples of both classes")
    return X, y


def _floating(xp: Any, a: Any, name: str) -> Any:
    if xp.isdtype(a.dtype, "real floating"):
        return a
    if xp.isdtype(a.dtype, ("integral", "bool")):
        warnings.warn(f"{name} has dtype {a.dtype}; converting it to float64 for training",
                      stacklevel=4)
        return xp.astype(a, xp.float64)
    raise InvalidInputError(f"{name} has dtype {a.dtype}; nnbin needs real numbers "
                            "(float32 or float64)")
