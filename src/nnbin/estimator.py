"""A scikit-learn-compatible estimator over nnbin (scikit-learn is an optional dependency).

    from nnbin.estimator import BinaryMLPClassifier
    clf = BinaryMLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300).fit(X, y)
    clf.predict_proba(X)     # (N, 2): P(classes_[0]), P(classes_[1])

It takes scikit-learn's ``MLPClassifier`` parameter names, meanings and defaults (ReLU,
Adam at 1e-3, mini-batches of min(200, N), ``max_iter`` epochs, the training-loss stopping
rule), so in a binary task replacing ``MLPClassifier`` with it is a one-word change; the
seed job's defaults (sigmoid, full-batch descent at step size 1) stay those of
:func:`nnbin.train` and the command line.

Array-API inputs (array-api-strict, PyTorch, CuPy, JAX) are supported: with
``sklearn.set_config(array_api_dispatch=True)`` arrays of a library go in and arrays of
that library, on the same device, come out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from . import options, validate
from .api import init_params
from .backend import backend_and_dtype, backend_of, get_backend
from .errors import InvalidInputError, warn
from .lbfgs import ITERATION_LIMIT, LINE_SEARCH_FAILED
from .model import (
    Params,
    block_width,
    device_of,
    forward_blocks,
    is_sparse,
    max_width,
    namespace,
    quiet_overflow,
    sigmoid,
)  # fmt: skip
from .optim import adam_rate
from .options import BY_SKLEARN, Flag, Whole, from_sklearn
from .options import check as check_option
from .rules import Schedule, StopRule
from .training import train

SOLVERS = {"adam": "adam", "sgd": "momentum"}


@dataclass
class StepSize:
    """Where the step-size schedule ended (``_optimizer.learning_rate``, as scikit-learn's
    optimizer object has it): the step size of the next epoch."""

    learning_rate: float


def _last_step_size(result: Any, options: dict[str, Any]) -> float:
    """The step size of the run's end as scikit-learn's optimizer holds it: the schedule's
    for "sgd"; Adam's bias-corrected lr sqrt(1 - b2^t) / (1 - b1^t) at its last step t."""
    lr = float(result.lr_final if result.lr_final is not None else options["lr"])
    if options["optimizer"] != "adam" or not result.optimizer_state:
        return lr
    t = float(backend_of(result.params[0]).to_host(result.optimizer_state[0]))
    if t == 0:
        return lr
    return float(adam_rate(math, lr, options["beta1"], options["beta2"], t))


def _not_lbfgs(estimator: Any) -> bool:
    """partial_fit is there for the stochastic solvers only, as scikit-learn's."""
    return estimator.solver != "lbfgs"


class BinaryMLPClassifier(ClassifierMixin, BaseEstimator):
    """A multi-layer perceptron for two classes, trained on mean binary cross-entropy with
    nnbin's hand-written backward pass, on any nnbin backend. scikit-learn's
    ``MLPClassifier`` parameters, with its defaults:

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (100,)  (``()``: no hidden layer, a
        logistic regression)
    activation : {"relu", "tanh", "logistic", "identity"}, default "relu"  ("sigmoid" =
        "logistic")
    solver : {"adam", "sgd", "lbfgs"}, default "adam"  ("lbfgs": full batch, nnbin's own
        L-BFGS, :mod:`nnbin.lbfgs`, on every backend; no partial_fit, as scikit-learn's)
    alpha : float, default 1e-4   L2 penalty, scaled as scikit-learn scales it
    batch_size : int or "auto", default "auto" = min(200, n_samples)
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        the step-size schedule of solver "sgd", as scikit-learn's (ignored with "adam")
    learning_rate_init : float, default 1e-3
    power_t : float, default 0.5   the exponent of the "invscaling" schedule
    max_iter : int, default 200   epochs
    shuffle : bool, default True  reshuffle the samples each epoch
    random_state : int or None    the seed of the initial weights, shuffles and split
        (None: drawn from NumPy's global random state, as scikit-learn does)
    tol, n_iter_no_change : stop after more than n_iter_no_change epochs without an
        improvement of tol (of the training loss, or with early stopping of the held-out
        accuracy); n_iter_no_change=np.inf: never stop on the rule
    verbose : bool or int >= 0   print the loss of each epoch (when true or > 0)
    warm_start : bool   fit starts from the fitted parameters (a new optimizer); loss_curve_
        and t_ go on from the fits before, as scikit-learn's do (n_iter_ counts this fit)
    momentum, nesterovs_momentum : for solver "sgd"
    early_stopping, validation_fraction : hold out a fraction, keep the best parameters
    beta_1, beta_2, epsilon : for solver "adam"
    max_fun : for "lbfgs", the most loss evaluations (the run stops after the iteration
        that passes it)
    backend : str or None
        nnbin backend for NumPy input (default: ``NNBIN_BACKEND``, else numpy). Arrays of
        another library always run on that library's backend. SciPy sparse X (CSR, CSC)
        trains on numpy, kept sparse and densified a block of rows at a time; the other
        backends refuse it in one error that says to pass ``X.toarray()``.
    dtype : "float32", "float64" or None
        Working dtype (default: the input's floating dtype, else the backend's default).
    cuda_graphs : bool or None
        True: replay the steps as CUDA graphs on torch CUDA tensors and CuPy arrays (one
        error where they do not apply; ignored with solver "lbfgs"); None (the default):
        eager until a GPU run has verified the graphs; False: never.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)  the two labels; ``classes_[1]`` is the positive class
        (shape (1,) after a fit on one label, which is then always predicted, as
        scikit-learn's MLPClassifier does)
    params_ : the fitted parameters, a :class:`~nnbin.Params` (W1, b1, ..., Wk, bk) of the fitted
        activation, of the fit data's library
    coefs_, intercepts_ : lists of the weight matrices and bias vectors, as scikit-learn's
    loss_curve_ : list of float   the training loss of each epoch
    n_iter_ : int   epochs run;  t_ : int   samples seen
    best_loss_ : float or None (None with early stopping)
    validation_scores_, best_validation_score_ : with early stopping (else None)
    n_layers_, n_outputs_ (1), out_activation_ ("logistic"), n_features_in_
    weights_in_ : the first weight matrix, of the library and device of the fit data
    loop_ : str   how the steps ran;  dtype_ : str   the working dtype ("float32" for float64
        data on JAX without its 64-bit mode, said once a process in a warning)
    """

    # fitted attributes that partial_fit continues (annotations only: no class attribute)
    loss_curve_: list[float]
    n_iter_: int
    t_: int
    _optimizer: StepSize

    def __init__(
        self,
        hidden_layer_sizes: int | tuple[int, ...] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | None = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        backend: str | None = None,
        dtype: str | None = None,
        cuda_graphs: bool | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.cuda_graphs = cuda_graphs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.array_api_support = True
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = get_backend(self.backend).about.takes_sparse
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
        be = backend_of(self.params_[0])  # a fitted model's: where its parameters are
        return validate_data(
            self, X, reset=False, dtype=self._dtypes(X), accept_sparse=_sparse_formats(be, X)
        )

    def _options(self) -> dict[str, Any]:
        """The training options of :func:`nnbin.train`, from this estimator's parameters by
        the options table's scikit-learn names (:func:`nnbin.options.from_sklearn`), each
        checked under the name its user wrote (one InvalidInputError)."""
        Flag().check("warm_start", self.warm_start)
        if not _is_flag(self.verbose):  # scikit-learn's: a bool or a whole number >= 0
            Whole(0).check("verbose", self.verbose)
        # batch_size "auto" and random_state take values of scikit-learn's own, read at fit
        # time; the backend (host data only) and the working dtype are applied there too
        given = {
            sk: getattr(self, sk) for sk in BY_SKLEARN if sk not in ("batch_size", "random_state")
        }
        if _is_infinite(given.get("n_iter_no_change")):  # scikit-learn's "never stop early"
            given["n_iter_no_change"] = options.MAX_STEPS
        checked = from_sklearn(given)
        if checked["steps"] == 0:  # scikit-learn's max_iter is in [1, inf): 0 epochs is no fit
            raise InvalidInputError("max_iter must be >= 1 (scikit-learn's MLPClassifier's range)")
        del checked["backend"], checked["dtype"]
        # what scikit-learn ignores (momentum with solver='adam', its nesterovs_momentum=True
        # default, validation_fraction without early stopping; the step size, the batches
        # and early stopping with solver='lbfgs') is not passed on
        defaults = {n: o.default for n, o in options.OPTIONS.items()}
        for name in options.inert({**defaults, **checked}):
            del checked[name]
        return {**checked, "init": "glorot"}  # scikit-learn's initialisation

    def _seed(self) -> int:
        if self.random_state is None:  # scikit-learn's meaning: NumPy's global random state
            return int(np.random.randint(0, 2**31 - 1))
        if isinstance(self.random_state, np.random.RandomState):
            return int(self.random_state.randint(0, 2**31 - 1))
        seed: int = check_option("seed", self.random_state, "random_state")
        return seed

    def _targets(
        self,
        X: Any,
        y: Any,
        reset: bool,
        classes: Any = None,
        warm: bool = False,
        one_class: bool = True,
    ) -> tuple[Any, Any]:
        """X validated, and y as a (N, 1) 0/1 column of X's library and dtype. Without
        ``classes`` they are y's: two labels, or (``one_class``: fit) one, which
        scikit-learn's MLPClassifier also fits (it then predicts that label; the network
        learns the target 0)."""
        X, y = validate_data(
            self, X, y, reset=reset, dtype=self._dtypes(X),
            accept_sparse=_sparse_formats(get_backend(self.backend), X),
        )  # fmt: skip
        y_host = np.asarray(_to_host(y))
        check_classification_targets(y_host)
        seen = np.unique(y_host)
        if warm and classes is not None and not np.array_equal(seen, classes):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the "
                f"previous call to fit. Previously got {classes}, `y` has {seen}"
            )
        if classes is None:
            y_type = type_of_target(y_host, input_name="y", raise_unknown=True)
            if y_type != "binary":
                raise ValueError(
                    f"Only binary classification is supported. The type of the target is {y_type}."
                )
            if seen.size < 2 and not one_class:
                raise ValueError(
                    f"y holds one label ({seen.tolist()}): the first call to partial_fit "
                    "needs classes= naming both labels (scikit-learn's needs classes= on "
                    "every first call)"
                )
            classes = seen
        unknown = np.setdiff1d(seen, classes)
        if unknown.size:
            raise ValueError(
                f"y holds labels {unknown[:5].tolist()} not in classes_ {classes.tolist()}"
            )
        self.classes_ = classes
        target = (
            (  # one class: the target 0
                (y_host == classes[1]) if classes.size == 2 else np.zeros(y_host.shape, bool)
            )
            .astype(np.float64)
            .reshape(-1, 1)
        )
        if _on_host(X):
            return X, target
        be = backend_of(X)
        return X, be.asarray(target, _dtype_name(X), device=device_of(X))

    @quiet_overflow
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> BinaryMLPClassifier:
        """Train on (X, y) for up to ``max_iter`` epochs (from the fitted parameters with
        ``warm_start``); ``sample_weight``: one weight per sample, as scikit-learn's (each
        batch's weighted mean loss, the held-out accuracy weighted; negative weights allowed
        where the sum is positive)."""
        options = self._options()  # the checks come first, before the data are looked at
        warm = self.warm_start and hasattr(self, "coefs_")
        known = self.classes_ if warm and hasattr(self, "classes_") else None
        X, yf = self._targets(X, y, reset=not warm, classes=known, warm=warm)
        start = self._start(X) if warm else None
        return self._fit(
            X, yf, options, start=start, state=None, weights=_weights(sample_weight, X)
        )

    @available_if(_not_lbfgs)
    @quiet_overflow
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> BinaryMLPClassifier:
        """One epoch over (X, y), continuing the parameters and the optimizer state of the
        calls before (the first call needs ``classes`` unless y holds both labels), or
        starting from assigned ``coefs_`` and ``intercepts_``; scikit-learn's signature
        (``sample_weight`` third)."""
        options = self._options()
        if options["early_stopping"]:  # as scikit-learn: no held-out split of one batch
            raise InvalidInputError(
                "partial_fit does not support early_stopping=True: set early_stopping=False, "
                "or use fit"
            )
        # scikit-learn's rule reads each call's loss across calls (below), not inside one
        patience, tol = options["n_iter_no_change"], options["tol"]
        adaptive = options.get("learning_rate") == "adaptive"
        options.update(steps=1, n_iter_no_change=None)
        if adaptive:  # the step size the calls (or fits) before left, constant in this one
            options["learning_rate"] = "constant"
            if hasattr(self, "_optimizer"):
                options["lr"] = self._optimizer.learning_rate
        first = not hasattr(self, "classes_")
        if not first and classes is not None:
            named = np.unique(np.asarray(classes))
            if not np.array_equal(named, self.classes_):
                raise ValueError(
                    f"classes={named.tolist()} is not the same as on the first call to "
                    f"partial_fit ({self.classes_.tolist()})"
                )
        if first:
            given = None if classes is None else np.unique(np.asarray(classes))
            if given is not None and given.size != 2:
                raise ValueError(f"classes must name exactly two labels, got {given.tolist()}")
            X, yf = self._targets(X, y, reset=True, classes=given, one_class=False)
        else:
            X, yf = self._targets(X, y, reset=False, classes=self.classes_)
        before = getattr(self, "best_loss_", None) if hasattr(self, "loss_curve_") else None
        count = getattr(self, "_no_improvement_count", 0) if before is not None else 0
        self._fit(
            X,
            yf,
            options,
            start=self._start(X) if hasattr(self, "coefs_") else None,
            state=getattr(self, "_optimizer_state", None) if hasattr(self, "params_") else None,
            incremental=True,
            weights=_weights(sample_weight, X),
        )
        # scikit-learn's stopping rule over the calls: the count of calls without a loss
        # below the best by tol; where it passes n_iter_no_change the adaptive schedule
        # takes a fifth of the step size (the count anew), else nothing stops a stream
        best = math.inf if before is None else before
        rule = StopRule(early=False, tol=tol, patience=patience, count=count, best_loss=best)
        if rule.update(self.loss_curve_[-1], None, None) and adaptive:
            schedule = Schedule("adaptive", self._optimizer.learning_rate)
            schedule.fired(rule)  # a fifth of the step size, the count anew (above the floor)
            self._optimizer = StepSize(schedule.lr)
        self._no_improvement_count = rule.count
        return self

    def _start(self, X: Any) -> Any:
        """The parameters the next fit starts from: ``coefs_`` and ``intercepts_``, which a
        user may have assigned (scikit-learn's own tests do, before any fit), placed where
        the fit data train (the fitted ones themselves when they are unchanged)."""
        pairs = list(zip(self.coefs_, self.intercepts_))
        host = [np.asarray(a) for W, b in pairs for a in (W, b)]
        if not pairs or any(W.ndim != 2 or b.ndim != 1 for W, b in zip(host[::2], host[1::2])):
            raise InvalidInputError(
                "coefs_ and intercepts_ must be lists of 2-d weight matrices and 1-d bias "
                "vectors, one of each per layer, as a fit gives"
            )
        fitted = getattr(self, "_fitted_host", None)  # the last fit's, on the host: no read
        if (
            fitted is not None
            and len(host) == len(fitted)
            and all(a.shape == f.shape and np.array_equal(a, f) for a, f in zip(host, fitted))
        ):
            # as fitted (no copy), as a network of the activation that trains next
            return Params(*self.params_, activation=validate.activation_name(self.activation))
        if _on_host(X) and hasattr(self, "params_"):
            be, dtype = backend_of(self.params_[0]), _dtype_name(self.params_[0])
            device = device_of(self.params_[0])
        else:  # host data go to ``backend``; a library's arrays stay with it
            host_data = _on_host(X)
            be, dtype = backend_and_dtype(
                X, self.backend if host_data else None, self._working_dtype(X)
            )
            device = None if host_data else device_of(X)
        placed = [be.asarray(a, dtype, device=device) for a in host]
        return Params(*placed, activation=validate.activation_name(self.activation))

    def _fit(
        self,
        X: Any,
        yf: Any,
        options: dict[str, Any],
        *,
        start: Any,
        state: Any,
        incremental: bool = False,
        weights: Any = None,
    ) -> BinaryMLPClassifier:
        n = int(X.shape[0])
        lbfgs = options["optimizer"] == "lbfgs"
        if lbfgs:  # full batch: scikit-learn's L-BFGS ignores batch_size
            batch = None
        elif self.batch_size == "auto":  # min(200, n): the core takes at most n a batch,
            batch = 200  # and folds of 162 and 163 rows then share JAX's compiled run
        else:
            batch = Whole(1).check("batch_size", self.batch_size)
            if batch > n:  # as scikit-learn: one batch of all n (the core's min(batch, n))
                warn(f"Got batch_size={batch} larger than the {n} samples: using {n}", UserWarning)
        continuing = incremental and hasattr(self, "_seed_")
        # warm starts and partial_fit go on from the fits before: the curve and t_ (and
        # n_iter_ for partial_fit only), as scikit-learn's do
        accumulating = start is not None and hasattr(self, "loss_curve_")
        # partial_fit: the first call's seed, moved on by the calls since (a new shuffle each)
        seed = int(self._seed_) + int(self._calls_) if continuing else self._seed()
        if start is None and ((incremental and _one_label(yf)) or self.classes_.size == 1):
            # a first batch of one class (classes= named both), or a fit on one class as
            # scikit-learn's: the weights train would draw from this seed, drawn here, so
            # that the run may see one class
            own = None if _on_host(X) else str(X.dtype).rpartition(".")[2]
            start = init_params(
                int(X.shape[1]), options["hidden"], seed, dtype=self._working_dtype(X) or own,
                backend=self.backend if _on_host(X) else backend_of(X).name,
                device=None if _on_host(X) else device_of(X),
                activation=options["activation"], init=options["init"],
            )  # fmt: skip
        if options.get("learning_rate") == "invscaling" and accumulating:
            options = {**options, "samples_seen": self.t_}  # the schedule counts on from t_
        on_log = None
        if self.verbose:

            def on_log(step: int, value: float) -> None:
                print(f"Iteration {step + 1}, loss = {value:.8f}")

        result = train(
            X,
            yf,
            log_every=1,
            seed=seed,
            dtype=self._working_dtype(X),
            backend=self.backend if _on_host(X) else None,
            batch_size=batch,
            params=start,
            optimizer_state=state,
            sample_weight=weights,
            on_log=on_log,
            **options,
        )
        if not continuing:
            self._seed_: int = seed
            self._calls_: int = 0
        self._calls_ += 1
        self.params_: Any = result.params
        self.loop_ = result.loop
        self.dtype_ = result.dtype  # the working dtype the fit chose
        self._optimizer_state = result.optimizer_state
        # scikit-learn's tests read the step size its optimizer ended at
        if not lbfgs:  # L-BFGS has no optimizer object in scikit-learn
            self._optimizer = StepSize(_last_step_size(result, options))
        host = backend_of(result.params[0]).to_host
        self.coefs_ = [np.asarray(host(W)) for W in result.params[0::2]]
        self.intercepts_ = [np.asarray(host(b)) for b in result.params[1::2]]
        # what coefs_ and intercepts_ were: an assignment or an edit since is seen (_start)
        self._fitted_host = [
            a.copy() for W, b in zip(self.coefs_, self.intercepts_) for a in (W, b)
        ]
        self.n_layers_ = len(self.coefs_) + 1
        self.n_outputs_ = 1
        self.out_activation_ = "logistic"
        # of the fit data's library and device (scikit-learn checks predict's input by it):
        # NumPy for host data, whichever backend trained
        self.weights_in_ = self.coefs_[0] if _on_host(X) else result.params[0]
        curve = [v for _, v in result.history]
        self.loss_curve_ = (self.loss_curve_ if accumulating else []) + curve
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else result.final_loss
        if lbfgs:  # scikit-learn's: the loss at the parameters L-BFGS ended at
            self.loss_ = result.final_loss
        self.final_loss_ = result.final_loss
        self.n_iter_ = (self.n_iter_ if continuing else 0) + result.n_iter
        self.t_ = (self.t_ if accumulating else 0) + result.n_iter * n
        if options.get("early_stopping"):
            self.validation_scores_: list[float] | None = list(result.validation_scores)
            self.best_validation_score_ = result.best_validation_score
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_) if self.loss_curve_ else None
        self._no_improvement_count = result.no_improvement_count  # scikit-learn's counter
        if lbfgs:
            self._warn_unless_converged(result, options["steps"])
        elif not incremental and result.n_iter == options["steps"]:
            warn(
                f"Stochastic Optimizer: Maximum iterations ({options['steps']}) reached and "
                "the optimization hasn't converged yet.",
                ConvergenceWarning,
            )
        if not incremental:  # a forward pass over the data: once a fit, not every call
            self._warn_if_collapsed(X, yf)
        return self

    @staticmethod
    def _warn_unless_converged(result: Any, max_iter: int) -> None:
        """scikit-learn's ConvergenceWarning for an L-BFGS run that did not converge, in
        its words (scipy's status and message)."""
        message = result.message or ITERATION_LIMIT
        if message.startswith("CONVERGENCE"):
            return
        status = 2 if message == LINE_SEARCH_FAILED else 1
        text = (
            f"lbfgs failed to converge after {result.n_iter} iteration(s) (status={status}):"
            f"\n{message}\n"
        )
        if result.n_iter == max_iter:
            text += (
                "\nIncrease the number of iterations to improve the convergence "
                f"(max_iter={max_iter})."
            )
        text += (  # scikit-learn's last sentence, word for word
            "\nYou might also want to scale the data as shown in:\n"
            "    https://scikit-learn.org/stable/modules/preprocessing.html"
        )
        warn(text, ConvergenceWarning)

    def _warn_if_collapsed(self, X: Any, yf: Any) -> None:
        """One warning when every training sample gets the same predicted class although
        both classes are there: training collapsed (the usual causes named)."""
        z = self._z(self._placed(X)[0])
        xp = namespace(z)
        some, every = bool(xp.any(z > 0.0)), bool(xp.all(z > 0.0))
        labels = np.asarray(_to_host(yf)) > 0.5
        if labels.any() and not labels.all() and (every or not some):
            warn(
                f"BinaryMLPClassifier predicts one class ({_plain(self.classes_[int(every)])!r}) "
                "for every training sample: training collapsed. Likely causes: unscaled "
                "features (standardise them, e.g. with sklearn.preprocessing.StandardScaler) "
                "or a step size too large for them (learning_rate_init)",
                UserWarning,
            )

    def _working_dtype(self, X: Any) -> str | None:
        """``dtype``, else host data's own float type where the backend can work in it
        (JAX without 64-bit mode cannot: float64 host data then train in float32), else
        None (the backend's default, or a library array's own type)."""
        if self.dtype is not None or not _on_host(X):
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
        check_is_fitted(self, "params_")  # not classes_ alone: a fit that raised sets it
        X, back = self._placed(self._validate(X, method))
        z = self._z(X)
        return back(namespace(z).reshape(z, (-1,)))

    @quiet_overflow
    def predict_proba(self, X: Any) -> Any:
        """Shape (N, 2): the probabilities of ``classes_[0]`` and ``classes_[1]``."""
        check_is_fitted(self, "params_")  # not classes_ alone: a fit that raised sets it
        X, back = self._placed(self._validate(X, "predict_proba"))
        z = self._z(X)
        xp = namespace(z)
        p1 = sigmoid(xp, z)
        return back(xp.concat([1.0 - p1, p1], axis=1))

    @quiet_overflow
    def predict_log_proba(self, X: Any) -> Any:
        """Shape (N, 2): the log-probabilities of ``classes_[0]`` and ``classes_[1]``, from
        the logits z (log sigmoid(z) = -log(1 + e^-z)): finite where a probability rounds to
        0 or 1."""
        check_is_fitted(self, "params_")  # not classes_ alone: a fit that raised sets it
        X, back = self._placed(self._validate(X, "predict_log_proba"))
        z = self._z(X)
        xp = namespace(z)
        zero = xp.zeros_like(z)
        return back(xp.concat([-xp.logaddexp(zero, z), -xp.logaddexp(zero, -z)], axis=1))

    def _z(self, X: Any) -> Any:
        """The logits (N, 1) of X placed where the parameters are (:meth:`_placed`); a SciPy
        sparse X's a block of rows at a time (:func:`nnbin.model.forward_blocks`)."""
        rows = None
        if is_sparse(X):
            width = block_width(max_width(self.params_), X)
            rows = backend_of(self.params_[0]).block_rows(int(X.shape[0]), width)
        # the fitted network's own activation (a set_params since does not change it); the
        # bare tuple of an estimator pickled by an older nnbin: the activation it was fitted with
        params = self.params_
        if not isinstance(params, Params):
            params = validate.network(params, self.activation)
        return forward_blocks(params, X, params.activation, rows)

    def _placed(self, X: Any) -> tuple[Any, Any]:
        """X where the parameters are, and how to bring a result back to X's library. Host
        (NumPy) data on a model fitted with another backend (``backend="jax"``, say) go to
        that backend and the results come back to the host; arrays of a library stay in it
        (they were fitted there: scikit-learn's namespace check says so otherwise)."""
        W1 = self.params_[0]
        if _on_host(X) and not isinstance(W1, np.ndarray):
            be = backend_of(W1)
            dtype = str(be.to_host(self.params_[-1]).dtype)
            return be.asarray(X, dtype), be.to_host
        return self._as_params_dtype(X), _same

    def predict(self, X: Any) -> Any:
        """The predicted label, from ``classes_`` (fitted on one label: that label)."""
        z = self._logits(X, "predict")
        xp = namespace(z)
        classes = self.classes_
        hit = z > 0 if classes.size == 2 else xp.zeros(z.shape, dtype=xp.bool, device=device_of(z))
        if isinstance(z, np.ndarray):
            return classes[hit.astype(np.intp)]
        be = backend_of(z)
        if classes.dtype.kind in "iuf":
            dev = device_of(z)
            c = be.xp.asarray(classes, device=dev)
            return xp.take(c, xp.astype(hit, xp.int64), axis=0)
        return classes[np.asarray(be.to_host(hit))]

    def _as_params_dtype(self, X: Any) -> Any:
        want = self.params_[0].dtype
        if X.dtype == want:
            return X
        return X.astype(want) if is_sparse(X) else namespace(X).astype(X, want)


def _same(a: Any) -> Any:
    return a


def _plain(label: Any) -> Any:
    """A class label as Python writes it: a NumPy scalar's value (``np.int64(1)``: 1), or the
    label itself (a Python str of an object array has no ``.item()``)."""
    return label.item() if isinstance(label, np.generic) else label


def _weights(sample_weight: Any, X: Any) -> Any:
    """``sample_weight`` as scikit-learn's MLP checks it (one number per sample, of X's
    namespace, negative ones allowed; a scalar is every sample's), None left None; nnbin
    then refuses a sum <= 0 (:func:`nnbin.validate.sample_weights`)."""
    if sample_weight is None:
        return None
    from sklearn.utils.validation import _check_sample_weight

    return _check_sample_weight(sample_weight, X, dtype=X.dtype)


def _on_host(X: Any) -> bool:
    """Host data: a NumPy array, or a SciPy sparse matrix (numpy backend)."""
    return isinstance(X, np.ndarray) or is_sparse(X)


def _sparse_formats(be: Any, X: Any) -> Any:
    """scikit-learn's ``accept_sparse`` for X: CSR and CSC (trained as CSR) where the backend
    ``be`` takes SciPy sparse X (numpy), else False, and for a sparse X one error that
    names what to do instead (an InvalidInputError naming "sparse", as scikit-learn's)."""
    if be.about.takes_sparse:
        return ["csr", "csc"]
    if is_sparse(X):
        raise InvalidInputError(
            f"X is a SciPy sparse matrix, which backend='numpy' trains on (kept sparse); for "
            f"the {be.name} backend pass dense data: X.toarray()"
        )
    return False


def _one_label(yf: Any) -> bool:
    """Whether the 0/1 column ``yf`` holds one label only (one read of the data)."""
    xp = namespace(yf)
    return not (bool(xp.any(yf == 1.0)) and bool(xp.any(yf == 0.0)))


def _is_flag(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _is_infinite(v: Any) -> bool:
    return isinstance(v, (float, np.floating)) and v == np.inf


def _to_host(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return a
    try:
        return backend_of(a).to_host(a)
    except (TypeError, InvalidInputError):  # not an array of an array-API library
        return np.asarray(a)


def _dtype_name(a: Any) -> str:
    return str(a.dtype).rpartition(".")[2]


__all__ = ["BinaryMLPClassifier", "get_backend"]
