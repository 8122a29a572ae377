"""ONNX export from nnbin's own forward pass.

The inference graph is not a second implementation of the network: it is what
:func:`nnbin.model.forward` and :func:`nnbin.model.sigmoid` — the functions training uses —
do when they are handed ``ndonnx`` arrays, an array-API library whose operations record an
ONNX graph instead of computing. The parameters become constants of the graph; X is its one
input, ``(N, D)`` with N free (any batch size), in the dtype the model was trained in.

Outputs: ``probability`` (N, 1), P(y = 1 | x), in the model's dtype, and ``label`` (N, 1),
int64, 1 where the logit is >= 0 (p >= 0.5, the rule :func:`nnbin.accuracy` and ``nnbin
predict`` use). The model's metadata (nnbin version, architecture, dtype, training settings,
final loss) goes into the ONNX file's ``metadata_props``.

Needs the ``onnx`` extra (``ndonnx``, ``onnx``, ``onnxruntime``): ``pip install
'nnbin[onnx]'``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import numpy as np

from . import validate
from .errors import MissingDependencyError, ModelFileError
from .files import atomic_write
from .model import Params, forward, like, sigmoid
from .modelfile import architecture

#: the packages the export needs (onnxruntime for the tests and users' checks)
PACKAGES = ("ndonnx", "onnx", "onnxruntime")
INPUT = "X"
OUTPUTS = ("probability", "label")


def missing_packages() -> list[str]:
    """The packages of the ``onnx`` extra that cannot be imported here."""
    return [p for p in PACKAGES if importlib.util.find_spec(p) is None]


def require() -> None:
    """One MissingDependencyError naming the extra, if a package of it is missing."""
    missing = missing_packages()
    if missing:
        raise MissingDependencyError(
            f"ONNX export needs {', '.join(missing)}: pip install 'nnbin[onnx]'"
        )


def onnx_model(
    params: Params, *, metadata: dict[str, Any] | None = None, activation: str | None = None
) -> Any:
    """The inference graph of ``params`` (host or any backend's arrays; any depth; their own
    hidden activation, ``activation`` only for a bare tuple of arrays) as an
    ``onnx.ModelProto``, built by running nnbin's forward pass on ndonnx arrays."""
    params = validate.network(params, activation)  # the one error for what is no params
    activation = params.activation
    host = [np.ascontiguousarray(_host(p)) for p in params]
    # the shapes chain (W1 (D, H1), b1 (H1,), ..., Wo (Hk, 1), bo (1,)) before any graph:
    # nothing is exported that onnxruntime could not run
    d = int(host[0].shape[0]) if host[0].ndim == 2 else 1
    validate.model_inputs(like(params, host), np.zeros((1, d), dtype=host[0].dtype))
    require()
    import ndonnx as ndx

    dtype = str(host[0].dtype)
    if dtype not in ("float32", "float64") or any(str(a.dtype) != dtype for a in host):
        raise ModelFileError(
            f"ONNX export takes float32 or float64 parameters of one dtype, not "
            f"{', '.join(str(a.dtype) for a in host)}"
        )
    if not all(np.all(np.isfinite(a)) for a in host):
        raise ModelFileError("refusing to export parameters that are not all finite")
    graph_params = like(params, (ndx.asarray(a) for a in host))
    x = ndx.argument(shape=("N", d), dtype=getattr(ndx, dtype))
    z = forward(graph_params, x, activation)  # nnbin's own forward pass, recorded as ONNX
    probability = sigmoid(ndx, z)
    label = ndx.astype(z >= 0.0, ndx.int64)
    model = ndx.build({INPUT: x}, {OUTPUTS[0]: probability, OUTPUTS[1]: label})
    model.producer_name = "nnbin"
    from ._version import __version__

    model.producer_version = __version__
    meta = {
        "nnbin_version": __version__,
        "n_features": str(d),
        **architecture(host),
        "activation": activation,
        "dtype": dtype,
        **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()},
    }
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model


def export_onnx(
    params: Params,
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
    activation: str | None = None,
) -> None:
    """Write the inference graph of ``params`` (their own hidden activation; ``activation``
    only for a bare tuple of arrays) to ``path``
    (atomically, by the rules of :mod:`nnbin.files`), after ``onnx.checker`` has passed it."""
    import onnx

    model = onnx_model(params, metadata=metadata, activation=activation)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    atomic_write(path, lambda fh: fh.write(data))


def model_metadata(model: Any) -> dict[str, Any]:
    """What a :class:`nnbin.Model` tells about its training, for the ONNX metadata."""
    return {
        "trained_on_backend": model.backend,
        "training_settings": model.settings,
        "final_loss": model.final_loss,
        "model_nnbin_version": model.nnbin_version,
    }


def _host(a: Any) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    from .backend import backend_of

    return backend_of(a).to_host(a)
