"""A scikit-learn-compatible estimator over nnbin (scikit-learn is an optional dependency).

    from nnbin.estimator import BinaryMLPClassifier
    clf = BinaryMLPClassifier(hidden=32, lr=1.0, steps=1000).fit(X, y)
    clf.predict_proba(X)     # (N, 2): P(classes_[0]), P(classes_[1])

Array-API inputs (array-api-strict, PyTorch, CuPy, JAX) are supported: with
``sklearn.set_config(array_api_dispatch=True)`` arrays of a library go in and arrays of
that library, on the same device, come out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from . import validate
from .backend import backend_of, get_backend
from .model import Params, forward, namespace, predict_proba, quiet_overflow
from .training import train


class BinaryMLPClassifier(ClassifierMixin, BaseEstimator):
    """nnbin's network (D inputs -> ``hidden`` sigmoid units -> 1 sigmoid output), trained by
    full-batch gradient descent on mean binary cross-entropy.

    Parameters
    ----------
    hidden : int, default 32
    lr : float, default 1.0
        Step size.
    steps : int, default 1000
        Full-batch gradient-descent steps.
    seed : int, default 0
        Seed of the initial weights.
    backend : str or None
        nnbin backend for NumPy input (default: ``NNBIN_BACKEND``, else numpy). Arrays of
        another library always run on that library's backend.
    dtype : "float32", "float64" or None
        Working dtype (default: the input's floating dtype, else the backend's default).

    Attributes
    ----------
    classes_ : ndarray of shape (2,)  the two labels; ``classes_[1]`` is the positive class
    params_ : nnbin.Params            the fitted parameters
    weights_in_ : array (D, hidden)   params_.W1, of the library and device of the fit data
    loss_curve_ : list of (step, loss)
    n_features_in_ : int
    """

    def __init__(
        self,
        hidden: int = 32,
        lr: float = 1.0,
        steps: int = 1000,
        seed: int = 0,
        backend: str | None = None,
        dtype: str | None = None,
    ) -> None:
        self.hidden = hidden
        self.lr = lr
        self.steps = steps
        self.seed = seed
        self.backend = backend
        self.dtype = dtype

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.array_api_support = True
        tags.input_tags.allow_nan = False
        return tags

    def _dtypes(self, X: Any) -> Any:
        from sklearn.utils._array_api import get_namespace

        xp, _ = get_namespace(X)
        return [xp.float64, xp.float32] if self.dtype is None else getattr(xp, self.dtype)

    def _validate(self, X: Any, method: str) -> Any:
        try:
            from sklearn.utils._array_api import check_same_namespace
        except ImportError:  # scikit-learn < 1.8
            pass
        else:
            check_same_namespace(X, self, attribute="weights_in_", method=method)
        return validate_data(self, X, reset=False, dtype=self._dtypes(X))

    @quiet_overflow
    def fit(self, X: Any, y: Any) -> BinaryMLPClassifier:
        # the checks train() makes, before any data are looked at (InvalidInputError is a
        # ValueError, what scikit-learn's checks expect)
        validate.hyperparameters(
            hidden=self.hidden, lr=self.lr, steps=self.steps, log_every=0, seed=self.seed
        )
        X, y = validate_data(self, X, y, reset=True, dtype=self._dtypes(X))
        y_host = np.asarray(_to_host(y))
        check_classification_targets(y_host)
        y_type = type_of_target(y_host, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        classes = np.unique(y_host)
        if classes.size != 2:
            raise ValueError(
                f"BinaryMLPClassifier needs exactly two classes in y; got {classes.size} "
                f"class{'es' if classes.size != 1 else ''} ({classes[:5].tolist()})"
            )
        self.classes_ = classes
        target = (y_host == classes[1]).astype(np.float64).reshape(-1, 1)
        if isinstance(X, np.ndarray):
            Xf, yf = X, target
        else:
            be = backend_of(X)
            yf = be.asarray(target, str(X.dtype).rpartition(".")[2], device=_device(X))
            Xf = X
        result = train(
            Xf,
            yf,
            hidden=int(self.hidden),
            lr=float(self.lr),
            steps=int(self.steps),
            log_every=max(1, int(self.steps) // 10),
            seed=int(self.seed),
            dtype=self._working_dtype(X),
            backend=self.backend if isinstance(X, np.ndarray) else None,
        )
        self.params_: Params = result.params
        # of the fit data's library and device (scikit-learn checks predict's input by it):
        # NumPy for host data, whichever backend trained
        self.weights_in_ = (
            np.asarray(backend_of(result.params.W1).to_host(result.params.W1))
            if isinstance(X, np.ndarray)
            else result.params.W1
        )
        self.loss_curve_ = result.history
        self.final_loss_ = result.final_loss
        self.n_iter_ = int(self.steps)
        return self

    def _working_dtype(self, X: Any) -> str | None:
        """``dtype``, else host data's own float type where the backend can work in it
        (JAX without 64-bit mode cannot: float64 host data then train in float32), else
        None (the backend's default, or a library array's own type)."""
        if self.dtype is not None or not isinstance(X, np.ndarray):
            return self.dtype
        from .errors import NnbinError

        own = str(X.dtype)
        be = get_backend(self.backend)
        try:
            be.asarray(np.zeros(1, own), own)
        except NnbinError:
            return None
        return own if own in be.dtypes else None

    def decision_function(self, X: Any) -> Any:
        """The output logit z for each sample, shape (N,); z > 0 predicts ``classes_[1]``."""
        return self._logits(X, "decision_function")

    @quiet_overflow
    def _logits(self, X: Any, method: str) -> Any:
        check_is_fitted(self)
        X, back = self._placed(self._validate(X, method))
        xp = namespace(X)
        return back(xp.reshape(forward(self.params_, X), (-1,)))

    @quiet_overflow
    def predict_proba(self, X: Any) -> Any:
        """Shape (N, 2): the probabilities of ``classes_[0]`` and ``classes_[1]``."""
        check_is_fitted(self)
        X, back = self._placed(self._validate(X, "predict_proba"))
        xp = namespace(X)
        p1 = predict_proba(self.params_, X)
        return back(xp.concat([1.0 - p1, p1], axis=1))

    def _placed(self, X: Any) -> tuple[Any, Any]:
        """X where the parameters are, and how to bring a result back to X's library. Host
        (NumPy) data on a model fitted with another backend (``backend="jax"``, say) go to
        that backend and the results come back to the host; arrays of a library stay in it
        (they were fitted there: scikit-learn's namespace check says so otherwise)."""
        W1 = self.params_.W1
        if isinstance(X, np.ndarray) and not isinstance(W1, np.ndarray):
            be = backend_of(W1)
            dtype = str(be.to_host(self.params_.b2).dtype)
            return be.asarray(X, dtype), be.to_host
        return self._as_params_dtype(X), _same

    def predict(self, X: Any) -> Any:
        """The predicted label, from ``classes_``."""
        z = self._logits(X, "predict")
        xp = namespace(z)
        classes = self.classes_
        if isinstance(z, np.ndarray):
            return classes[(z > 0).astype(np.intp)]
        be = backend_of(z)
        if classes.dtype.kind in "iuf":
            dev = _device(z)
            c = be.xp.asarray(classes, device=dev)
            return xp.take(c, xp.astype(z > 0, xp.int64), axis=0)
        return classes[np.asarray(be.to_host(z)) > 0]

    def _as_params_dtype(self, X: Any) -> Any:
        xp = namespace(X)
        want = self.params_.W1.dtype
        if X.dtype != want:
            X = xp.astype(X, want)
        return X


def _same(a: Any) -> Any:
    return a


def _to_host(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return a
    try:
        return backend_of(a).to_host(a)
    except TypeError:
        return np.asarray(a)


def _device(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


__all__ = ["BinaryMLPClassifier", "get_backend"]
