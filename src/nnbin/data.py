"""The seed job's data."""

from __future__ import annotations

import numpy as np

from .errors import DataFileError, NnbinError


def two_gaussians(
    n_per_class: int = 10_000,
    seed: int = 0,
    *,
    mean: float = 6.0,
    std: float = 1.0,
    n_features: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The seed notebook's data: N(-mean, std) labelled 0 and N(+mean, std) labelled 1, shuffled.

    Returns host (NumPy float64) arrays X of shape (2 n, D) and y of shape (2 n, 1);
    :func:`nnbin.train` moves them to the chosen backend once.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    x0 = rng.normal(-mean, std, size=(n_per_class, n_features))
    x1 = rng.normal(mean, std, size=(n_per_class, n_features))
    X = np.concatenate([x0, x1])
    y = np.concatenate([np.zeros((n_per_class, 1)), np.ones((n_per_class, 1))])
    order = rng.permutation(2 * n_per_class)
    return X[order], y[order]


LABEL_NAMES = ("label", "y", "target", "class")


def load_data(path: str, label: str | None = None, *, require_labels: bool = True
              ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Features, 0/1 labels and feature names from a CSV (with a header), .npy or .npz file.

    CSV: every column is numeric; the label column is ``label`` if given, else the first
    of label/y/target/class present, else the last column. ``.npy``: a 2-D array whose last
    column is the label. ``.npz``: arrays ``X`` and ``y``. With ``require_labels=False`` a
    file without a label column gives ``y = None`` (for prediction).
    """
    import os

    from .files import input_size

    try:
        size = input_size(path)
    except FileNotFoundError:
        raise DataFileError(f"data file {path} does not exist") from None
    except OSError as exc:
        raise DataFileError(str(exc) if exc.errno is None else
                            f"cannot read {path}: {exc.strerror}") from None
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            _check_npy_size(path, size)
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2 or arr.shape[1] < (2 if require_labels else 1):
                raise DataFileError(f"{path}: expected a 2-D array with features and a last "
                                    f"label column, got shape {arr.shape}")
            names = [f"x{i}" for i in range(arr.shape[1])]
            if require_labels or (label is not None):
                X, y = arr[:, :-1], arr[:, -1:]
                return _checked(path, X, y, names[:-1])
            return _checked(path, arr, None, names)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "X" not in z:
                    raise DataFileError(f"{path}: expected arrays 'X' and 'y', found {list(z)}")
                X = z["X"]
                y = z["y"].reshape(-1, 1) if "y" in z else None
            if X.ndim == 1:
                X = X[:, None]
            if y is None and require_labels:
                raise DataFileError(f"{path}: no array 'y' with the labels")
            return _checked(path, X, y, [f"x{i}" for i in range(X.shape[1])])
        return _read_csv(path, label, require_labels)
    except NnbinError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from None


def _check_npy_size(path: str, size: int) -> None:
    """Refuse a .npy whose header declares more data than the file holds, before NumPy
    allocates it (a 193-byte file can declare 1e11 rows)."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(fh, max_header_size=10_000)
        except (ValueError, OSError, EOFError, SyntaxError) as exc:
            raise DataFileError(f"{path} is not a readable .npy file ({exc})") from None
        header = fh.tell()
    if dtype.hasobject:
        raise DataFileError(f"{path} holds Python objects; nnbin reads numbers only")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > size - header:
        raise DataFileError(f"{path} declares shape {shape} of {dtype} ({declared:,} bytes) but "
                            f"holds {size - header:,} bytes of data: truncated or corrupt")


def _read_csv(path: str, label: str | None, require_labels: bool
              ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    import csv

    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataFileError(f"{path} is empty: expected a header line and rows of numbers")
    header = [h.strip() for h in rows[0]]
    if len(header) < 2 and (require_labels or label):
        raise DataFileError(f"{path}: found one column {header[0]!r}; expected comma-separated "
                            "feature columns and a label column")
    if _is_number(header[0]):
        raise DataFileError(f"{path}: the first line must be a header of column names")
    if label is not None and label not in header:
        raise DataFileError(f"{path}: no column {label!r}; columns are {', '.join(header)}")
    if label is None:
        label = next((n for n in LABEL_NAMES if n in header), None)
        if label is None and require_labels:
            label = header[-1]
    values = np.empty((len(rows) - 1, len(header)))
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise DataFileError(f"{path} line {i}: {len(r)} values, the header has "
                                f"{len(header)} columns")
        for j, cell in enumerate(r):
            try:
                values[i - 2, j] = float(cell)
            except ValueError:
                raise DataFileError(f"{path} line {i}, column {header[j]!r}: {cell!r} is not "
                                    "a number") from None
    if values.shape[0] == 0:
        raise DataFileError(f"{path} has a header but no rows")
    if label is None:
        return _checked(path, values, None, header)
    k = header.index(label)
    features = [n for n in header if n != label]
    return _checked(path, np.delete(values, k, axis=1), values[:, k:k + 1], features)


def _checked(path: str, X: np.ndarray, y: np.ndarray | None, names: list[str]
             ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    X = np.asarray(X, dtype=np.float64)
    if X.shape[1] == 0:
        raise DataFileError(f"{path}: no feature columns")
    if not np.all(np.isfinite(X)):
        raise DataFileError(f"{path}: the features contain NaN or infinite values")
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        bad = set(np.unique(y).tolist()) - {0.0, 1.0}
        if bad:
            raise DataFileError(f"{path}: labels must be 0 or 1; found {sorted(bad)[:5]}")
    return X, y, names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
