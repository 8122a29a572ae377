"""Model files: safetensors (never pickle), written atomically.

A file holds the parameter arrays (``W1``, ``b1``, ..., ``Wk``, ``bk``: the output layer
last) and string metadata: the format name and version, the nnbin version, n_features,
hidden (the first layer's width; 0 with no hidden layer), dtype, the backend it was
trained on, the training settings, the final loss and the loss history (JSON). Format 2
adds the architecture: ``hidden_layers`` (JSON list of widths) and ``activation``. A model
of the seed network's kind (one sigmoid hidden layer) is written as format 1, which every
nnbin reads; format 1 files load as one sigmoid layer, and a format 2 file must name its
architecture (a missing field is an error naming it, never a default). Loading checks
every field against the arrays before anything is used (tensors must be float32 or
float64), and puts the parameters on any backend, whichever one trained them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ModelFileError
from .files import atomic_write
from .model import ACTIVATIONS, Params, widths
from .options import MAX_LAYERS

FORMAT = "nnbin-model"
FORMAT_VERSION = 2
#: the metadata every file of a format version must have (format 2: the architecture too)
REQUIRED = {
    1: ("n_features", "hidden", "dtype"),
    2: ("n_features", "hidden", "dtype", "hidden_layers", "activation"),
}
#: the tensor dtypes nnbin reads, as safetensors names them
TENSOR_DTYPES = {"F32": "float32", "F64": "float64"}


def names(n_arrays: int) -> list[str]:
    """The array names of a network of ``n_arrays // 2`` layers: W1, b1, W2, b2, ..."""
    return [f"{k}{i}" for i in range(1, n_arrays // 2 + 1) for k in "Wb"]


@dataclass
class Model:
    """Parameters and what is known about how they were trained."""

    #: a :class:`~nnbin.Params` (W1, b1, ..., Wo, bo), which says its activation (a bare
    #: tuple of arrays is taken with ``activation`` given)
    params: Any
    dtype: str
    backend: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    final_loss: float | None = None
    history: list[tuple[int, float]] = field(default_factory=list)
    nnbin_version: str = ""
    #: the hidden-layer activation: the parameters' own (given for a bare tuple, or equal)
    activation: str | None = None

    def __post_init__(self) -> None:
        from .validate import network

        self.params = network(self.params, self.activation)
        self.activation = self.params.activation

    @property
    def n_features(self) -> int:
        return int(self.params[0].shape[0])

    @property
    def hidden(self) -> int | tuple[int, ...]:
        """The hidden width (one layer), or the widths (several)."""
        sizes = tuple(int(W.shape[1]) for W in self.params[0:-2:2])
        return sizes[0] if len(sizes) == 1 else sizes


def architecture(params: Any) -> dict[str, str]:
    """The metadata that says the layers of ``params`` (a model file's and an ONNX export's):
    ``hidden``, the first layer's width (0 with no hidden layer), and ``hidden_layers``, the
    JSON list of every width."""
    hidden = widths(params)
    return {"hidden": str(hidden[0] if hidden else 0), "hidden_layers": json.dumps(list(hidden))}


def save(path: str | os.PathLike[str], model: Model, *, to_host: Any = np.asarray) -> None:
    """Write ``model`` to ``path`` atomically: a temporary file in the same folder, flushed
    to disk, then renamed over ``path``. An interrupted save leaves any old file intact."""
    from safetensors.numpy import save as st_save

    from ._version import __version__

    arrays = {
        n: np.ascontiguousarray(to_host(a)) for n, a in zip(names(len(model.params)), model.params)
    }
    if any(not np.all(np.isfinite(a)) for a in arrays.values()):
        raise ModelFileError("refusing to save parameters that are not all finite")
    if len(arrays) // 2 - 1 > MAX_LAYERS:
        raise ModelFileError(
            f"refusing to save a network of {len(arrays) // 2 - 1} hidden layers: nnbin reads "
            f"at most {MAX_LAYERS}"
        )
    seed_kind = len(arrays) == 4 and model.params.activation == "sigmoid"
    layers = architecture(model.params)
    meta = {
        "format": FORMAT,
        # the lowest format that describes the model: a seed-kind model stays readable by
        # every nnbin
        "format_version": "1" if seed_kind else str(FORMAT_VERSION),
        "nnbin_version": __version__,
        "n_features": str(arrays["W1"].shape[0]),
        "hidden": layers["hidden"],
        "dtype": model.dtype,
        "backend": model.backend,
        "settings": json.dumps(model.settings),
        "final_loss": json.dumps(model.final_loss),
        "history": json.dumps(model.history),
    }
    if not seed_kind:
        meta["hidden_layers"] = layers["hidden_layers"]
        meta["activation"] = model.params.activation
    data = st_save(arrays, metadata=meta)
    atomic_write(path, lambda fh: fh.write(data), durable=True)


def load(path: str | os.PathLike[str], backend: str | None = None) -> Model:
    """Read a model file and put its parameters on ``backend`` (default: NNBIN_BACKEND,
    else numpy), in the dtype it was saved in. Raises ModelFileError with the reason."""
    from .backend import get_backend

    path = os.fspath(path)
    raw = _read_checked(path)
    arrays, meta = _parse(raw, path)
    be = get_backend(backend)
    dtype = meta["dtype"]
    if dtype not in be.dtypes:
        raise ModelFileError(
            f"{path} holds {dtype} parameters; the {be.name} backend "
            f"supports {', '.join(be.dtypes)}"
        )
    placed = [be.asarray(arrays[n], dtype) for n in names(len(arrays))]
    params = Params(*placed, activation=meta["activation"])
    try:
        history = [(int(s), float(v)) for s, v in json.loads(meta.get("history", "[]"))]
        settings = json.loads(meta.get("settings", "{}"))
        final = json.loads(meta.get("final_loss", "null"))
        if not isinstance(settings, dict) or not (
            final is None or (isinstance(final, (int, float)) and not isinstance(final, bool))
        ):
            raise TypeError("settings must be an object and final_loss a number")
        final = None if final is None else float(final)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ModelFileError(f"{path}: unreadable training metadata ({exc})") from None
    return Model(
        params,
        dtype,
        meta.get("backend", ""),
        settings,
        final,
        history,
        meta.get("nnbin_version", ""),
        meta["activation"],
    )


MAX_HEADER = 1 << 20  # bytes of JSON header a model file may have (an nnbin model: ~2 KB)


def _read_checked(path: str) -> bytes:
    """The bytes of a model file, read only after its header has been checked: a regular
    file (never a FIFO or a device), a header of at most MAX_HEADER bytes within the file,
    tensors that fit in the file as declared. A file of zeros or one that declares more
    than it holds is refused before anything large is read."""
    from .files import input_size

    try:
        size = input_size(path)
        with open(path, "rb") as fh:
            first = fh.read(8)
            header_len = int.from_bytes(first, "little") if len(first) == 8 else 0
            if not (1 < header_len <= min(MAX_HEADER, size - 8)):
                return first + fh.read(64)  # enough for _parse to say what it is
            header = fh.read(header_len)
            _declared_fits(header, size - 8 - header_len, path)
            return first + header + fh.read()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None


def _declared_fits(header: bytes, data_bytes: int, path: str) -> None:
    """The header's tensors end within the file's data (checked before reading it)."""
    try:
        parsed = json.loads(header)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return  # _parse reports a corrupted header
    if not isinstance(parsed, dict):
        return
    end = 0
    for name, entry in parsed.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        ):
            raise ModelFileError(f"{path}: tensor {name!r} has no valid data_offsets")
        end = max(end, offsets[1])
    if end > data_bytes:
        raise ModelFileError(
            f"{path} declares {end:,} bytes of tensors but holds "
            f"{data_bytes:,}: truncated or corrupt"
        )


def _parse(raw: bytes, path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays and metadata of a safetensors file, every field checked."""
    header_len = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else 0
    if not (header_len > 1 and 8 + header_len <= len(raw) and raw[8:9] == b"{"):
        # not a safetensors frame: say what it looks like instead
        if _looks_like_pickle(raw) or raw[:2] == b"PK":
            raise ModelFileError(
                f"{path} looks like a pickle or zip file, not a safetensors "
                "model; nnbin never unpickles files"
            )
        if len(raw) < 8:
            raise ModelFileError(f"{path} is not an nnbin model file (only {len(raw)} bytes)")
        raise ModelFileError(f"{path} is not a safetensors file, or it is truncated")
    try:
        header = json.loads(raw[8 : 8 + header_len])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ModelFileError(f"{path} has a corrupted safetensors header") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} has a corrupted safetensors header")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelFileError(f"{path}: its metadata must map names to strings")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not an nnbin model")
    text = meta.get("format_version", "")
    if not (text.isascii() and text.isdigit()):
        raise ModelFileError(
            f"{path}: format_version must be a whole number >= 1, got {text!r}"
            if "format_version" in meta
            else f"{path}: the metadata field format_version is missing"
        )
    version = int(text)
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer nnbin (model format {version}; "
            f"this nnbin reads up to {FORMAT_VERSION}): upgrade nnbin"
        )
    if version < 1:
        raise ModelFileError(f"{path}: format_version must be a whole number >= 1, got {text!r}")
    missing = [k for k in REQUIRED[version] if k not in meta]
    if missing:
        raise ModelFileError(
            f"{path}: the metadata field(s) {', '.join(missing)} are missing (a format "
            f"{version} model file has {', '.join(REQUIRED[version])})"
        )
    for name, entry in header.items():
        kind = entry.get("dtype") if isinstance(entry, dict) else None
        if name != "__metadata__" and kind not in TENSOR_DTYPES:
            raise ModelFileError(
                f"{path}: tensor {name!r} is {kind}; nnbin reads float32 and float64 "
                f"tensors ({', '.join(TENSOR_DTYPES)}) only"
            )
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    try:
        arrays = st_load(raw)
    except (SafetensorError, ValueError) as exc:
        raise ModelFileError(f"{path} is corrupted or truncated ({exc})") from None
    dtype = meta.get("dtype", "")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path}: unsupported dtype {dtype!r} in metadata")
    try:
        d, h = int(meta["n_features"]), int(meta["hidden"])
        layers = json.loads(meta["hidden_layers"]) if version >= 2 else [h]
    except (ValueError, OverflowError, RecursionError):
        raise ModelFileError(
            f"{path}: n_features, hidden and hidden_layers must be whole numbers (JSON for "
            f"hidden_layers), got {meta['n_features']!r}, {meta['hidden']!r}, "
            f"{meta.get('hidden_layers')!r}"
        ) from None
    if not (
        isinstance(layers, list)
        and len(layers) <= MAX_LAYERS
        and all(isinstance(w, int) and not isinstance(w, bool) for w in layers)
    ):
        raise ModelFileError(
            f"{path}: hidden_layers must list 0 to {MAX_LAYERS} whole numbers, got "
            f"{meta.get('hidden_layers')!r}"
        )
    if d < 1 or any(w < 1 for w in layers) or (layers[0] if layers else 0) != h:
        raise ModelFileError(
            f"{path}: impossible shapes in metadata (n_features={d}, hidden={h}, "
            f"hidden_layers={layers}; all must be >= 1, hidden the first layer's width, "
            "0 with no hidden layer)"
        )
    activation = meta["activation"] if version >= 2 else "sigmoid"
    if activation not in ACTIVATIONS:
        raise ModelFileError(
            f"{path}: unknown activation {activation!r} (this nnbin knows {', '.join(ACTIVATIONS)})"
        )
    sizes = [d, *layers, 1]
    want: dict[str, tuple[int, ...]] = {}
    for i in range(len(sizes) - 1):
        want[f"W{i + 1}"] = (sizes[i], sizes[i + 1])
        want[f"b{i + 1}"] = (sizes[i + 1],)
    if set(arrays) != set(want):
        raise ModelFileError(f"{path} holds arrays {sorted(arrays)}, expected {list(want)}")
    for n in want:
        a = arrays[n]
        if a.shape != want[n]:
            raise ModelFileError(
                f"{path}: {n} has shape {a.shape}, expected {want[n]} for "
                f"n_features={d}, hidden layers {layers}"
            )
        if str(a.dtype) != dtype:
            raise ModelFileError(f"{path}: {n} is {a.dtype} but the metadata says {dtype}")
        if not np.all(np.isfinite(a)):
            raise ModelFileError(f"{path}: {n} holds NaN or infinite values")
    return arrays, {**meta, "activation": activation}  # format 1: sigmoid


def from_result(result: Any) -> Model:
    """A :class:`Model` from a :class:`nnbin.TrainResult`."""
    return Model(
        result.params,
        result.dtype,
        result.backend,
        dict(result.settings),
        result.final_loss,
        list(result.history),
        activation=getattr(result, "activation", None),
    )


def save_result(path: str | os.PathLike[str], result: Any) -> None:
    """Save a training result (:func:`nnbin.train`'s return value) or a Model to ``path``."""
    from .backend import backend_of

    model = result if isinstance(result, Model) else from_result(result)
    be = backend_of(model.params[0])
    save(path, model, to_host=be.to_host)


def _looks_like_pickle(raw: bytes) -> bool:
    """A pickle of protocol 2-5 starts with 0x80 and its protocol number, then opcodes;
    a safetensors file starts with its header length, whose upper bytes are zero."""
    return (
        len(raw) >= 3 and raw[0] == 0x80 and 2 <= raw[1] <= 5 and raw[2:8] != bytes(len(raw[2:8]))
    )
