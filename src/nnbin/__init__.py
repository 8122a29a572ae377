"""nnbin: a small neural-network binary classifier written once against the array API.

    import nnbin
    X, y = nnbin.two_gaussians(n_per_class=10_000, seed=0)
    result = nnbin.train(X, y, hidden=32, lr=1.0, steps=1000, log_every=100, seed=0)
    nnbin.predict_proba(result.params, X)

The math (:mod:`nnbin.model`: forward, loss, backward; :mod:`nnbin.optim`) takes its array
namespace from its inputs; the one training loop is :mod:`nnbin.loop`; backends
(``NNBIN_BACKEND``) only bind an array library.
"""

from ._version import __version__
from .api import accuracy, forward, init_params, loss, loss_and_grads, predict_proba, step
from .backend import Backend, available_names, backend_of, get_backend
from .data import DataFileError, load_data, two_gaussians
from .errors import (
    BackendUnavailableError,
    MissingDependencyError,
    MixedArraysError,
    NnbinError,
    TrainingDivergedError,
    UnknownBackendError,
)
from .export import export_onnx
from .model import Params
from .modelfile import Model, ModelFileError, load
from .modelfile import save_result as save
from .optim import Optimizer
from .training import TrainResult, train
from .validate import InvalidInputError


def __getattr__(name: str) -> object:
    # The estimator needs scikit-learn, an optional dependency: import it on first use.
    if name == "BinaryMLPClassifier":
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:
            raise ImportError(
                "nnbin.BinaryMLPClassifier needs scikit-learn: pip install 'nnbin[sklearn]'"
            )
        from .estimator import BinaryMLPClassifier

        return BinaryMLPClassifier
    raise AttributeError(f"module 'nnbin' has no attribute {name!r}")


__all__ = [
    "Backend",
    "BackendUnavailableError",
    "BinaryMLPClassifier",
    "DataFileError",
    "InvalidInputError",
    "MissingDependencyError",
    "MixedArraysError",
    "Model",
    "ModelFileError",
    "NnbinError",
    "Optimizer",
    "Params",
    "TrainResult",
    "TrainingDivergedError",
    "UnknownBackendError",
    "__version__",
    "accuracy",
    "available_names",
    "backend_of",
    "export_onnx",
    "forward",
    "get_backend",
    "init_params",
    "load",
    "load_data",
    "loss",
    "loss_and_grads",
    "predict_proba",
    "save",
    "step",
    "train",
    "two_gaussians",
]
