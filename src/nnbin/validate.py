"""Validation at the API boundary, in one place, done once before training starts.

Nothing here runs inside the training loop: the checks that need the data's values (NaN,
labels) are one reduction each, evaluated once up front, so a GPU backend synchronises
once, not per step.
"""

from __future__ import annotations

import itertools
from typing import Any

import array_api_compat
import numpy as np

from . import options
from .errors import InvalidInputError, MixedArraysError, warn
from .model import dense, is_sparse, namespace, widths
from .options import Whole


def counted(n: int, word: str) -> str:
    """``n`` and ``word``, plural where it must be: "1 feature", "2 features"."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _kind(a: Any) -> str:
    return f"{type(a).__module__.split('.')[0]}.{type(a).__qualname__}"


def whole_number(name: str, v: Any, least: int) -> int:
    """``v`` as a Python int >= ``least``: a Python or NumPy integer (np.int64(4) works),
    never a bool, a float or a string (:class:`nnbin.options.Whole`'s rule)."""
    value: int = Whole(least).check(name, v)
    return value


def hidden_sizes(hidden: Any) -> int | tuple[int, ...]:
    """One hidden layer's width, or a sequence of them (the ``hidden`` option's rule)."""
    sizes: int | tuple[int, ...] = options.check("hidden", hidden)
    return sizes


def penalty(alpha: Any) -> float:
    """An L2 penalty: a finite number >= 0, as a Python float (the ``alpha`` option's rule)."""
    value: float = options.check("alpha", alpha)
    return value


def activation_name(activation: Any) -> str:
    """One of nnbin.model.ACTIVATIONS; scikit-learn's "logistic" means "sigmoid"."""
    name: str = options.check("activation", activation)
    return name


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
    n: int,
    d: int,
    hidden: int | tuple[int, ...],
    itemsize: int,
    working_nh: float,
    block_rows: int | None,
) -> None:
    """Refuse, before anything is allocated, a run whose parameters and step temporaries
    cannot fit in host memory: about 8 copies of the parameters (they, the gradients, the
    update, temporaries) and ``working_nh`` (rows, H) arrays a step for each hidden layer
    (rows: a block, or N)."""
    sizes = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    params = parameter_count(d, hidden) * itemsize * 8
    rows = n if block_rows is None else min(n, block_rows)
    need = params + int(working_nh * rows * sum(sizes) * itemsize)
    what = f"hidden={hidden}, {counted(n, 'sample')}, {counted(d, 'feature')}"
    host_memory_fits(need, "training would need", what, "use fewer hidden units or samples")


def parameter_count(n_features: int, hidden: int | tuple[int, ...]) -> int:
    """How many numbers the parameters of a network of these widths hold."""
    sizes = (n_features, *((hidden,) if isinstance(hidden, int) else hidden), 1)
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def host_memory_fits(need: int, doing: str, what: str, fix: str) -> None:
    """Refuse, before it is allocated, host work of ``need`` bytes that would not fit in 90%
    of the memory available now: one InvalidInputError that says ``fix``. Under 64 MiB
    nothing is read (the estimator's partial_fit calls this once a batch)."""
    if need < 1 << 26:
        return
    have = available_memory()
    if need > 0.9 * have:
        raise InvalidInputError(
            f"{doing} about {need / 2**30:.1f} GiB ({what}) but {have / 2**30:.1f} GiB of "
            f"memory is available: {fix}"
        )


def step_size(lr: Any, *, traced: bool = False) -> Any:
    """A step size: a real, finite number > 0 (not a bool), as a Python float (the ``lr``
    option's rule). With ``traced``, a 0-d array of an array library (a tracer under
    ``jax.jit``) is passed on as it is: reading its value would synchronise a device or
    break tracing."""
    if (
        traced
        and getattr(lr, "shape", None) == ()
        and not isinstance(lr, (int, float))
        and type(lr).__module__.split(".")[0] != "numpy"
    ):
        return lr
    return options.check("lr", lr)


def network(params: Any, activation: Any = None) -> Any:
    """``params`` as a :class:`~nnbin.model.Params` that knows its architecture: the
    parameters' own when they are one (``activation``, when given, must agree); a bare
    tuple of arrays only with ``activation`` given — never a guessed default."""
    from .model import Params

    if (
        not isinstance(params, tuple)
        or len(params) < 2
        or len(params) % 2
        or not all(hasattr(p, "shape") and hasattr(p, "dtype") for p in params)
    ):
        raise InvalidInputError(
            "params must be nnbin.Params(W1, b1, ..., Wo, bo, activation=...) ((Wo, bo) with "
            "no hidden layer), as nnbin.init_params, nnbin.load or a TrainResult's .params "
            f"give; got {type(params).__name__}"
        )
    if isinstance(params, Params):  # an activation given too must agree (Params says so)
        if activation is None:
            return params
        return type(params)(*params, activation=activation_name(activation))
    if activation is None:
        raise InvalidInputError(
            "params is a bare tuple of arrays, which does not say its hidden layers' "
            "activation: pass activation= ('sigmoid' for the seed network), or "
            "nnbin.Params(*params, activation=...); nnbin never guesses it"
        )
    return Params(*params, activation=activation_name(activation))


def model_inputs(
    params: Any, X: Any, y: Any = None, *, activation: Any = None, block_rows: Any = None
) -> tuple[Any, Any, Any]:
    """Check parameters, X and (if given) y for the public functions, by their shapes and
    types only (nothing reads the values: no device synchronisation). Returns the
    parameters as a :class:`~nnbin.model.Params` (:func:`network`), X, and y as (N, 1)."""
    params = network(params, activation)
    names = [f"{k}{i // 2 + 1}" for i, k in zip(range(len(params)), "Wb" * len(params))]
    for name, p in zip(names, params, strict=True):
        _not_masked(p, name)
    W1 = params[0]
    if W1.ndim != 2:
        raise InvalidInputError(f"W1 must have shape (D, H), got {tuple(W1.shape)}")
    d = W1.shape[0]
    fan_in = d
    for k in range(0, len(params), 2):
        W, b = params[k], params[k + 1]
        last = k == len(params) - 2
        if W.ndim != 2 or W.shape[0] != fan_in or (last and W.shape[1] != 1):
            want_w = f"({fan_in}, {1 if last else 'H'})"
            raise InvalidInputError(
                f"{names[k]} must have shape {want_w} after the layer below, got "
                f"{tuple(W.shape)}: the parameters do not belong together"
            )
        if tuple(b.shape) != (W.shape[1],):
            raise InvalidInputError(
                f"{names[k + 1]} must have shape {(W.shape[1],)} for {names[k]} of shape "
                f"{tuple(W.shape)}, got {tuple(b.shape)}: the parameters do not belong together"
            )
        fan_in = W.shape[1]
    if is_sparse(X):
        raise InvalidInputError(
            "X is a SciPy sparse matrix: nnbin.train and BinaryMLPClassifier take one (numpy "
            "backend); these functions take dense arrays: pass X.toarray()"
        )
    _matrix(X)
    if X.shape[1] != d:
        raise InvalidInputError(
            f"X has {counted(X.shape[1], 'feature')} but the parameters take {d} "
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


def starting_params(
    params: Any, X: Any, hidden: int | tuple[int, ...], dtype: str, activation: str | None
) -> Any:
    """The caller's starting parameters, checked against the data, ``hidden`` and
    ``activation`` (None: the parameters' own; a bare tuple needs it)."""
    X = dense(X[:1, ...])  # one row: what the checks below need of the data
    params, _, _ = model_inputs(params, X, activation=activation)
    sizes = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if widths(params) != sizes:
        raise InvalidInputError(
            f"params have hidden widths {widths(params)} but hidden={hidden}: pass the "
            "widths the parameters have"
        )
    if any(not str(p.dtype).endswith(dtype) for p in params):
        raise InvalidInputError(f"params must be {dtype}, as the data; got {params[0].dtype}")
    xp = namespace(X, *params)  # one library: MixedArraysError otherwise
    finite = xp.stack([xp.all(xp.isfinite(p)) for p in params])
    if not bool(xp.all(finite)):  # one read, before the run
        raise InvalidInputError(
            "params hold NaN or infinite values: training starts from finite parameters (a "
            "TrainingDivergedError's .params are the last finite ones of a run)"
        )
    return params


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


def same_library(X: Any, y: Any, name: str = "y") -> None:
    """X and y (or the array called ``name``: sample_weight) come from one library and one
    device; else one error naming both. A SciPy sparse X is host data: its labels and
    weights are NumPy arrays."""
    if is_sparse(X):
        if not isinstance(y, np.ndarray):
            raise MixedArraysError(
                f"X is a SciPy sparse matrix (host data) but {name} is a {_kind(y)}; nnbin "
                f"never copies between libraries: pass {name} as a NumPy array"
            )
        return
    try:
        array_api_compat.array_namespace(X, y)
    except TypeError:
        raise MixedArraysError(
            f"X is a {_kind(X)} but {name} is a {_kind(y)}; nnbin never copies between "
            "libraries: convert both to one library first"
        ) from None
    dx, dy = array_api_compat.device(X), array_api_compat.device(y)
    if dx != dy and dx is not None and dy is not None:
        raise MixedArraysError(f"X is on {dx} but {name} is on {dy}: move them to one device first")


def training_data(X: Any, y: Any, *, both_classes: bool = True) -> tuple[Any, Any]:
    """Check X (N, D) and y (N, 1) or (N,) with labels 0/1, finite values, and (unless a
    run continues: ``both_classes`` false) samples of both classes.

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
    if is_sparse(X):  # rows sliced cheaply, densified one block at a time (CSC: copied once)
        X = X.tocsr()
    y = _label_column(X, y)
    xp = array_api_compat.array_namespace(y)  # X's library (same_library)
    X = _floating(xp, X, "X")
    y = _floating(xp, y, "y")
    # One reduction per check, evaluated once (a single host synchronisation on GPUs).
    if not bool(xp.all(xp.isfinite(X.data if is_sparse(X) else X))):  # sparse: stored values
        raise InvalidInputError("X contains NaN or infinite values; remove or impute them")
    if not bool(xp.all((y == 0.0) | (y == 1.0))):
        raise InvalidInputError(
            "y must hold only the labels 0 and 1 (for other labels use "
            "nnbin.BinaryMLPClassifier, which maps any two labels)"
        )
    if both_classes:
        has_one = bool(xp.any(y == 1.0))
        if not (has_one and bool(xp.any(y == 0.0))):
            raise InvalidInputError(
                f"y has only label {int(has_one)}: training needs samples of both classes"
            )
    return X, y


def sample_weights(w: Any, X: Any) -> Any:
    """Sample weights for the rows of X (checked by :func:`training_data`), as a (N, 1)
    column of X's library: a sequence or array of N finite numbers whose sum is positive
    (negative ones allowed, as scikit-learn's MLP allows them; host weights for host data;
    another library's X takes weights of its library, never a silent copy). One read of the
    weights checks them. None stays None (every sample 1)."""
    if w is None:
        return None
    if isinstance(X, np.ndarray) or is_sparse(X):  # host data: host weights
        if array_api_compat.is_array_api_obj(w) and not isinstance(w, np.ndarray | np.generic):
            same_library(X, w, "sample_weight")  # another library's array: never copied
        if not isinstance(w, np.ndarray):
            try:
                w = np.asarray(w, dtype=np.float64)
            except (TypeError, ValueError):
                raise InvalidInputError(
                    "sample_weight must be numbers, one per sample of X"
                ) from None
    elif not hasattr(w, "shape"):
        raise InvalidInputError(
            f"sample_weight must be an array of X's library ({type(X).__module__}), one "
            "weight per sample: nnbin never copies between libraries"
        )
    same_library(X, w, "sample_weight")
    n = int(X.shape[0])
    if tuple(w.shape) not in ((n,), (n, 1)):
        raise InvalidInputError(
            f"sample_weight has shape {tuple(w.shape)}; X has {n} rows: pass one weight per "
            "sample, shape (N,)"
        )
    xp = array_api_compat.array_namespace(w)  # X's library (same_library)
    if not xp.isdtype(w.dtype, ("real floating", "integral", "bool")):
        raise InvalidInputError(f"sample_weight must be real numbers; got dtype {w.dtype}")
    w = xp.reshape(w, (n, 1))
    if not xp.isdtype(w.dtype, "real floating"):
        w = xp.astype(w, xp.float64 if xp.isdtype(X.dtype, "integral") else X.dtype)
    ok = xp.all(xp.isfinite(w)) & (xp.sum(w) > 0.0)
    if not bool(ok):  # one read; then say which
        if not bool(xp.all(xp.isfinite(w))):
            raise InvalidInputError("sample_weight holds NaN or infinite values")
        if not bool(xp.any(w != 0.0)):
            raise InvalidInputError("sample_weight is 0 for every sample: nothing to train on")
        weight_sum(w, "sample_weight")  # says the sum
    return w


def weight_sum(w: Any, what: str) -> None:
    """Refuse weights (a column, or None: 1 each) whose sum is not positive: the weighted
    mean loss (and accuracy) divide by it."""
    if w is None:
        return
    total = float(array_api_compat.array_namespace(w).sum(w))
    if not total > 0.0:
        raise InvalidInputError(
            f"{what} sums to {total:.6g}, not > 0: the weighted mean loss divides by the "
            "weights' sum; weights may be negative, as scikit-learn's, but must sum to > 0"
        )


def _floating(xp: Any, a: Any, name: str) -> Any:
    if xp.isdtype(a.dtype, "real floating"):
        return a
    if xp.isdtype(a.dtype, ("integral", "bool")):
        warn(f"{name} has dtype {a.dtype}; converting it to float64 for training")
        return a.astype(np.float64) if is_sparse(a) else xp.astype(a, xp.float64)
    raise InvalidInputError(
        f"{name} has dtype {a.dtype}; nnbin needs real numbers (float32 or float64)"
    )
