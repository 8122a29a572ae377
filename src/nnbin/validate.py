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


def whole_number(name: str, v: Any, least: int) -> int:
    """``v`` as a Python int >= ``least``: a Python or NumPy integer (np.int64(4) works),
    never a bool, a float or a string."""
    import numbers

    if (
        isinstance(v, bool)
        or type(v).__name__ in ("bool_", "bool")
        or not isinstance(v, numbers.Integral)
    ):
        raise InvalidInputError(f"{name} must be a whole number >= {least}, got {v!r}")
    v = int(v)
    if v < least:
        raise InvalidInputError(f"{name} must be >= {least}, got {v}")
    return v


#: the most steps one run takes (JAX counts steps in 32-bit integers)
MAX_STEPS = 2**31 - 1


def hyperparameters(
    *, hidden: Any, lr: Any, steps: Any, log_every: Any, seed: Any = 0
) -> tuple[int, float, int, int, int]:
    """hidden >= 1, lr > 0 and finite, steps >= 0, log_every >= 0, seed >= 0, as Python
    numbers (so that they can be saved with a model)."""
    steps_, every = whole_number("steps", steps, 0), whole_number("log_every", log_every, 0)
    if steps_ > MAX_STEPS or every > MAX_STEPS:
        raise InvalidInputError(f"steps and log_every must be <= {MAX_STEPS:,} (2**31 - 1)")
    return (
        whole_number("hidden", hidden, 1),
        step_size(lr),
        steps_,
        every,
        whole_number("seed", seed, 0),
    )


def available_memory() -> int:
    """Bytes of memory the system can give now (MemAvailable: free memory plus what the
    page cache would give back), else free pages; a huge number where neither is known."""
    import os

    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def memory_fits(
    n: int, d: int, hidden: int, itemsize: int, working_nh: float, block_rows: int | None
) -> None:
    """Refuse, before anything is allocated, a run whose parameters and step temporaries
    cannot fit in host memory: about 8 copies of the parameters (they, the gradients, the
    update, temporaries) and ``working_nh`` (rows, H) arrays a step (rows: a block, or N)."""
    params = (d * hidden + 2 * hidden + 1) * itemsize * 8
    rows = n if block_rows is None else min(n, block_rows)
    need = params + int(working_nh * rows * hidden * itemsize)
    have = available_memory()
    if need > 0.9 * have:
        raise InvalidInputError(
            f"training would need about {need / 2**30:.1f} GiB (hidden={hidden:,}, "
            f"{n:,} samples, {d} feature(s)) but {have / 2**30:.1f} GiB of memory is "
            "available: use fewer hidden units or samples"
        )


def step_size(lr: Any, *, traced: bool = False) -> Any:
    """A step size: a real, finite number > 0 (not a bool), as a Python float. With
    ``traced``, a 0-d array of an array library (a tracer under ``jax.jit``) is passed on
    as it is: reading its value would synchronise a device or break tracing."""
    if (
        traced
        and getattr(lr, "shape", None) == ()
        and not isinstance(lr, (int, float))
        and type(lr).__module__.split(".")[0] != "numpy"
    ):
        return lr
    if (
        isinstance(lr, (bool, str, bytes))
        or type(lr).__name__ in ("bool_", "bool")
        or getattr(lr, "shape", ()) != ()
    ):
        raise InvalidInputError(f"lr must be a number, got {lr!r}")
    try:
        rate = float(lr)
    except (TypeError, ValueError):
        raise InvalidInputError(f"lr must be a number, got {lr!r}") from None
    if not (math.isfinite(rate) and rate > 0):
        raise InvalidInputError(f"lr must be a finite number > 0, got {rate}")
    return rate


def model_inputs(
    params: Any, X: Any, y: Any = None, *, block_rows: Any = None
) -> tuple[Any, Any, Any]:
    """Check parameters, X and (if given) y for the public functions, by their shapes and
    types only (nothing reads the values: no device synchronisation). Returns the
    parameters as :class:`~nnbin.model.Params`, X, and y as (N, 1)."""
    from .model import Params

    if (
        not isinstance(params, tuple)
        or len(params) != 4
        or not all(hasattr(p, "shape") and hasattr(p, "dtype") for p in params)
    ):
        raise InvalidInputError(
            "params must be nnbin.Params(W1, b1, W2, b2) (four arrays), as nnbin.init_params "
            f"or a TrainResult's .params give; got {type(params).__name__}"
        )
    params = Params(*params)
    for name, p in zip(Params._fields, params, strict=True):
        _not_masked(p, name)
    W1, b1, W2, b2 = params
    if W1.ndim != 2:
        raise InvalidInputError(f"W1 must have shape (D, H), got {tuple(W1.shape)}")
    d, h = W1.shape
    want = {"b1": (h,), "W2": (h, 1), "b2": (1,)}
    for name, p in zip(("b1", "W2", "b2"), (b1, W2, b2), strict=True):
        if tuple(p.shape) != want[name]:
            raise InvalidInputError(
                f"{name} must have shape {want[name]} for W1 of shape {tuple(W1.shape)}, got "
                f"{tuple(p.shape)}: the parameters do not belong together"
            )
    _matrix(X)
    if X.shape[1] != d:
        raise InvalidInputError(
            f"X has {X.shape[1]} features but the parameters take {d} "
            f"(W1 has shape {tuple(W1.shape)})"
        )
    if block_rows is not None and (
        isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1
    ):
        raise InvalidInputError(
            f"block_rows must be None or a whole number >= 1, got {block_rows!r}"
        )
    if y is not None:
        y = _label_column(X, y)
    for a, name in ((X, "X"), (y, "y")):
        if a is not None:
            xp = array_api_compat.array_namespace(a)
            if not xp.isdtype(a.dtype, ("real floating", "integral", "bool")):
                raise InvalidInputError(
                    f"{name} has dtype {a.dtype}; nnbin needs real numbers (float32 or float64)"
                )
    return params, X, y


def _not_masked(a: Any, name: str) -> None:
    if type(a).__module__.startswith("numpy.ma"):
        raise InvalidInputError(
            f"{name} is a masked array; nnbin would ignore its mask: drop the masked samples "
            f"or fill them ({name}.filled(value)) first"
        )


def _array(a: Any, name: str) -> None:
    """An array (shape and dtype), not a list, not a masked array."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise InvalidInputError(
            f"{name} must be an array, got {type(a).__name__}; use numpy.asarray({name})"
        )
    _not_masked(a, name)


def _matrix(X: Any) -> None:
    """X an array of shape (samples, features)."""
    _array(X, "X")
    if X.ndim != 2:
        hint = "; for one feature use X.reshape(-1, 1) (or X[:, None])" if X.ndim == 1 else ""
        raise InvalidInputError(
            f"X must be 2-D (samples, features), got shape {tuple(X.shape)}{hint}"
        )


def _label_column(X: Any, y: Any) -> Any:
    """y as (N, 1), one label per row of X, of X's library and device ((N,) is reshaped)."""
    _array(y, "y")
    same_library(X, y)
    if y.ndim == 1:
        y = array_api_compat.array_namespace(y).reshape(y, (-1, 1))
    if y.ndim != 2 or y.shape[1] != 1:
        raise InvalidInputError(f"y must have shape (N,) or (N, 1), got {tuple(y.shape)}")
    if y.shape[0] != X.shape[0]:
        raise InvalidInputError(
            f"X has {X.shape[0]} rows but y has {y.shape[0]}: one label per sample"
        )
    return y


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
    _matrix(X)
    _array(y, "y")
    same_library(X, y)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidInputError(
            f"X has shape {tuple(X.shape)}: at least one sample and one feature are needed"
        )
    y = _label_column(X, y)
    xp = array_api_compat.array_namespace(X, y)
    X = _floating(xp, X, "X")
    y = _floating(xp, y, "y")
    # One reduction per check, evaluated once (a single host synchronisation on GPUs).
    if not bool(xp.all(xp.isfinite(X))):
        raise InvalidInputError("X contains NaN or infinite values; remove or impute them")
    if not bool(xp.all((y == 0.0) | (y == 1.0))):
        raise InvalidInputError(
            "y must hold only the labels 0 and 1 (for other labels use "
            "nnbin.BinaryMLPClassifier, which maps any two labels)"
        )
    has_one = bool(xp.any(y == 1.0))
    if not (has_one and bool(xp.any(y == 0.0))):
        raise InvalidInputError(
            f"y has only label {int(has_one)}: training needs samples of both classes"
        )
    return X, y


def _floating(xp: Any, a: Any, name: str) -> Any:
    if xp.isdtype(a.dtype, "real floating"):
        return a
    if xp.isdtype(a.dtype, ("integral", "bool")):
        warnings.warn(
            f"{name} has dtype {a.dtype}; converting it to float64 for training", stacklevel=4
        )
        return xp.astype(a, xp.float64)
    raise InvalidInputError(
        f"{name} has dtype {a.dtype}; nnbin needs real numbers (float32 or float64)"
    )
