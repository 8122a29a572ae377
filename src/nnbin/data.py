"""Data: the seed job's, data files read into host arrays, and early stopping's
stratified hold-out."""

from __future__ import annotations

import math

import numpy as np

from .errors import DataFileError, InvalidInputError, NnbinError
from .validate import counted, host_memory_fits, whole_number


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
    n_per_class = whole_number("n_per_class", n_per_class, 1)
    n_features = whole_number("n_features", n_features, 1)
    host_memory_fits(  # x0 and x1, X and X shuffled, y: about four copies of X
        32 * n_per_class * (n_features + 1) * 2, "the data would need",
        f"{counted(2 * n_per_class, 'sample')}, {counted(n_features, 'feature')}",
        "draw fewer samples",
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    x0 = rng.normal(-mean, std, size=(n_per_class, n_features))
    x1 = rng.normal(mean, std, size=(n_per_class, n_features))
    X = np.concatenate([x0, x1])
    y = np.concatenate([np.zeros((n_per_class, 1)), np.ones((n_per_class, 1))])
    order = rng.permutation(2 * n_per_class)
    return X[order], y[order]


LABEL_NAMES = ("label", "y", "target", "class")


def load_data(
    path: str, label: str | None = None, *, require_labels: bool = True
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
        raise DataFileError(
            str(exc) if exc.errno is None else f"cannot read {path}: {exc.strerror}"
        ) from None
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            _check_npy_size(path, size)
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2 or arr.shape[1] < (2 if require_labels else 1):
                raise DataFileError(
                    f"{path}: expected a 2-D array with features and a last "
                    f"label column, got shape {arr.shape}"
                )
            names = [f"x{i}" for i in range(arr.shape[1])]
            if require_labels or (label is not None):
                X, y = arr[:, :-1], arr[:, -1:]
                return _checked(path, X, y, names[:-1], "the array's last column")
            return _checked(path, arr, None, names)
        if ext == ".npz":
            import zipfile

            try:
                with np.load(path, allow_pickle=False) as z:
                    if "X" not in z:
                        raise DataFileError(f"{path}: expected arrays 'X' and 'y', found {list(z)}")
                    X = z["X"]
                    y = z.get("y")
            except (zipfile.BadZipFile, EOFError, KeyError) as exc:
                raise DataFileError(
                    f"{path} is not a readable .npz file (truncated or corrupt: {exc})"
                ) from None
            if X.ndim == 0 or (y is not None and y.ndim == 0):
                raise DataFileError(
                    f"{path}: X and y must be arrays of samples, not single values (0-d arrays)"
                )
            if X.ndim == 1:
                X = X[:, None]
            if X.ndim != 2:
                raise DataFileError(
                    f"{path}: X must be 2-D (samples, features), got shape {X.shape}"
                )
            if y is not None:
                if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1) or y.shape[0] != X.shape[0]:
                    raise DataFileError(
                        f"{path}: y must hold one label per row of X (X {X.shape}, y {y.shape})"
                    )
                y = y.reshape(-1, 1)
            if y is None and require_labels:
                raise DataFileError(f"{path}: no array 'y' with the labels")
            return _checked(path, X, y, [f"x{i}" for i in range(X.shape[1])], "the array y")
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
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(fh, max_header_size=10_000)
        except (ValueError, OSError, EOFError, SyntaxError) as exc:
            raise DataFileError(f"{path} is not a readable .npy file ({exc})") from None
        header = fh.tell()
    if dtype.hasobject:
        raise DataFileError(f"{path} holds Python objects; nnbin reads numbers only")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > size - header:
        raise DataFileError(
            f"{path} declares shape {shape} of {dtype} ({declared:,} bytes) but "
            f"holds {size - header:,} bytes of data: truncated or corrupt"
        )


def _read_csv(
    path: str, label: str | None, require_labels: bool
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """A CSV with a header line. Errors name the physical line (blank lines count) and the
    column; nothing ambiguous is resolved silently: duplicated column names, two columns
    that could each be the label, a --label that matches a column only in another case."""
    import csv

    rows: list[tuple[int, list[str]]] = []  # (physical line, cells), blank lines left out
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM is dropped
            reader = csv.reader(fh)
            for r in reader:
                if r and any(c.strip() for c in r):
                    rows.append((reader.line_num, r))
    except csv.Error as exc:
        raise DataFileError(f"{path} line {reader.line_num}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8 CSV"
        ) from None
    if not rows:
        raise DataFileError(f"{path} is empty: expected a header line and rows of numbers")
    header_line, cells = rows[0]
    header = [h.strip() for h in cells]
    if len(header) < 2 and (require_labels or label):
        raise DataFileError(
            f"{path}: found one column {header[0]!r}; expected comma-separated "
            "feature columns and a label column"
        )
    if _is_number(header[0]):
        raise DataFileError(f"{path}: the first line must be a header of column names")
    seen: dict[str, int] = {}
    for h in header:  # linear in the header's length (a million columns read in a second)
        seen[h] = seen.get(h, 0) + 1
    twice = sorted(h for h, k in seen.items() if k > 1)
    if twice:
        raise DataFileError(
            f"{path} line {header_line}: the column name(s) "
            f"{', '.join(map(repr, twice))} appear more than once"
        )
    if label is not None and label not in header:
        near = [h for h in header if h.lower() == label.lower()]
        hint = f" (did you mean {near[0]!r}? names are case-sensitive)" if near else ""
        raise DataFileError(f"{path}: no column {label!r}{hint}; columns are {', '.join(header)}")
    if label is None:
        candidates = [h for h in header if h.lower() in LABEL_NAMES]
        if len(candidates) > 1:
            raise DataFileError(
                f"{path}: columns {', '.join(map(repr, candidates))} could "
                "each be the label: name it with --label (label=)"
            )
        label = candidates[0] if candidates else (header[-1] if require_labels else None)
        taken = (
            f"column {label!r} (taken as the label by its name)"
            if candidates
            else f"column {label!r} (the last, taken as the label; name the label with --label)"
        )
    else:
        taken = f"the label column {label!r}"
    for line, r in rows[1:]:  # every row's length first: nothing is allocated for a bad file
        if len(r) != len(header):
            raise DataFileError(
                f"{path} line {line}: {len(r)} values, the header has {len(header)} columns"
            )
    if len(rows) == 1:
        raise DataFileError(f"{path} has a header but no rows")
    values = np.empty((len(rows) - 1, len(header)))
    for i, (line, r) in enumerate(rows[1:]):
        for j, cell in enumerate(r):
            try:
                if "_" in cell:  # Python's float() takes 1_000; a CSV number does not
                    raise ValueError(cell)
                values[i, j] = float(cell)
            except ValueError:
                raise DataFileError(
                    f"{path} line {line}, column {header[j]!r}: {cell!r} is not a number"
                ) from None
    if label is None:
        return _checked(path, values, None, header)
    k = header.index(label)
    features = [n for n in header if n != label]
    return _checked(path, np.delete(values, k, axis=1), values[:, k : k + 1], features, taken)


def _checked(
    path: str, X: np.ndarray, y: np.ndarray | None, names: list[str], taken: str = "the labels"
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """X, y and the feature names, checked; ``taken`` says where the labels came from."""
    for a, what in ((X, "features"), (y, "labels")):
        if a is not None and np.asarray(a).dtype.kind not in "fiub":
            raise DataFileError(
                f"{path}: the {what} have dtype {np.asarray(a).dtype}; nnbin "
                "reads real numbers only (no complex, text or objects)"
            )
    X = np.asarray(X, dtype=np.float64)
    if X.shape[1] == 0:
        raise DataFileError(f"{path}: no feature columns")
    if not np.all(np.isfinite(X)):
        raise DataFileError(f"{path}: the features contain NaN or infinite values")
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        bad = set(np.unique(y).tolist()) - {0.0, 1.0}
        if bad:
            raise DataFileError(
                f"{path}: labels must be 0 or 1, but {taken} holds {sorted(bad)[:5]}"
            )
    return X, y, names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def hold_out_rows(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Early stopping's split of the host ``labels`` (0/1, any shape of N): the rows
    trained on and the rows held out (row numbers, each in the data's order), the held-out
    ``fraction`` stratified as scikit-learn's classifiers split: ``held`` = ceil(fraction
    N) samples (at least one each side) of which round(held N1 / N) positives (at least one
    each side), taken first-come in the permutation
    ``numpy.random.default_rng([seed, 2]).permutation(N)``, both sides kept in the data's
    order: the same split on every backend. A class with a
    single sample, or a hold-out too small to hold both classes, is one InvalidInputError
    (scikit-learn's ValueError). Data of one class (a continued run) split unstratified.
    The split is drawn on the host: a backend's labels are read there once."""
    n = int(labels.shape[0])
    if n < 2:
        raise InvalidInputError("early stopping needs at least 2 samples (one held out)")
    held = min(max(1, math.ceil(fraction * n)), n - 1)
    order = np.random.default_rng([seed, 2]).permutation(n)
    positive = np.asarray(labels).reshape(-1)[order] == 1.0
    ones = int(np.count_nonzero(positive))
    counts = {"False": n - ones, "True": ones}
    few = [name for name, c in counts.items() if c == 1]
    if few:
        raise InvalidInputError(
            "The least populated classes in y have only 1 member, too few for early "
            "stopping's stratified hold-out (2 of each class, one each side). Classes with "
            f"too few members are: {few} (True: label 1, the positive class): add samples "
            "of it, or set early_stopping=False"
        )
    if 0 < ones < n:
        if held < 2 or n - held < 2:
            raise InvalidInputError(
                f"validation_fraction={fraction:g} holds out {held} of {n} samples, but a "
                "stratified hold-out needs at least 2 on each side (one of each class): "
                "change validation_fraction or add samples"
            )
        held_pos = min(max(1, math.floor(held * ones / n + 0.5)), ones - 1)
        held_pos = max(held_pos, held - (n - ones - 1))  # at least one negative trained on
        held_pos = min(held_pos, held - 1)  # and one held out
        rank = np.empty(n, dtype=np.int64)  # each sample's place among its class's
        rank[positive] = np.arange(ones)
        rank[~positive] = np.arange(n - ones)
        out_mask = np.where(positive, rank < held_pos, rank < held - held_pos)
    else:
        out_mask = np.arange(n) < held
    return np.sort(order[~out_mask]), np.sort(order[out_mask])
