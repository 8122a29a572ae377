"""``nnbin quality``: what the network learns, beside scikit-learn's ``MLPClassifier`` with
the same architecture, optimizer, batch size and epochs, measured in one run.

Each data set is split once (stratified, 25 % held out, seed 0) and standardised on its
training part. Each setting of :data:`SETTINGS` (Adam; SGD with the invscaling and the
adaptive step-size schedules; L-BFGS, full batch, up to ``epochs`` iterations) runs in
both estimators from their own seeded initial weights, exactly ``epochs`` epochs (the
stopping rule off: ``n_iter_no_change`` above the epochs) except with the adaptive schedule,
which acts when the rule fires (scikit-learn's default rule, ``n_iter_no_change=10``, on),
and with L-BFGS, which stops by its own rule. The table gives held-out accuracy, ROC AUC, the
first fit's time (on JAX it compiles) and the fit time (median of ``repeats`` fits after
that first one).

Data sets: scikit-learn's breast-cancer data (569 x 30); ``make_moons(noise=0.2)``
(2,000 x 2); ``make_classification`` (200,000 x 20, 10 informative features).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_backend
from ..errors import MissingDependencyError
from .common import whole_number_type

#: name -> epochs
DATASETS: dict[str, int] = {"breast-cancer": 200, "moons": 200, "classification-200k": 10}
HIDDEN = (100,)
BATCH = 200
#: name -> the estimators' parameters for it (beside the architecture, batch and epochs)
SETTINGS: dict[str, dict[str, Any]] = {
    "adam": {"solver": "adam", "learning_rate_init": 1e-3},
    "sgd-invscaling": {
        "solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.5,
        "power_t": 0.25,
    },
    "sgd-adaptive": {"solver": "sgd", "learning_rate": "adaptive", "learning_rate_init": 0.1},
    "lbfgs": {"solver": "lbfgs"},  # full batch: max_iter iterations, its own stopping rule
}  # fmt: skip


@dataclass
class Row:
    dataset: str
    model: str  # "sklearn MLPClassifier" or "nnbin:<backend> <dtype>"
    accuracy: float
    roc_auc: float
    fit_seconds: float
    epochs: int
    shape: tuple[int, int]
    setting: str = "adam"
    #: the first fit's seconds (JAX compiles in it; the timed fits reuse the compile)
    first_seconds: float = 0.0


def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    if name == "breast-cancer":
        X, y = datasets.load_breast_cancer(return_X_y=True)
    elif name == "moons":
        X, y = datasets.make_moons(n_samples=2000, noise=0.2, random_state=0)
    elif name == "classification-200k":
        X, y = datasets.make_classification(
            n_samples=200_000, n_features=20, n_informative=10, random_state=0
        )
    else:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def _split(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def _fit(cls: Any, params: dict[str, Any], X: np.ndarray, y: np.ndarray) -> Any:
    return cls(**params).fit(X, y)


def _timed(fit: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    seconds, model = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        model = fit()
        seconds.append(time.perf_counter() - t0)
    return model, statistics.median(seconds)


def compare(
    datasets: Sequence[str] = tuple(DATASETS),
    backends: Sequence[str] = ("numpy", "jax"),
    repeats: int = 1,
    epochs: dict[str, int] | None = None,
    settings: Sequence[str] = tuple(SETTINGS),
) -> list[Row]:
    """Fit and score every estimator on every data set in every setting; one :class:`Row`
    each."""
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.metrics import accuracy_score, roc_auc_score
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        raise MissingDependencyError(
            "the quality benchmark compares with scikit-learn: pip install 'nnbin[sklearn]'"
        ) from None
    from ..estimator import BinaryMLPClassifier

    rows: list[Row] = []
    for name in datasets:
        n_epochs = (epochs or {}).get(name, DATASETS[name])
        Xtr, Xte, ytr, yte = _split(*_load(name))
        for setting in settings:
            common = {
                "hidden_layer_sizes": HIDDEN,
                "activation": "relu",
                "batch_size": BATCH,
                "alpha": 1e-4,
                "max_iter": n_epochs,
                "n_iter_no_change": n_epochs + 1,  # never stop early: exactly n_epochs
                "random_state": 0,
                **SETTINGS[setting],
            }
            if setting == "sgd-adaptive":  # the schedule acts when the rule fires
                del common["n_iter_no_change"]
            candidates: list[tuple[str, Callable[[], Any]]] = [
                ("sklearn MLPClassifier", functools.partial(_fit, MLPClassifier, common, Xtr, ytr))
            ]
            for be_name in backends:
                dtype = get_backend(be_name).default_dtype
                extra = {"backend": be_name, "dtype": dtype}
                ours = functools.partial(_fit, BinaryMLPClassifier, {**common, **extra}, Xtr, ytr)
                candidates.append((f"nnbin:{be_name} {dtype}", ours))
            for label, fit in candidates:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    _, first = _timed(fit, 1)  # JAX compiles here
                    model, seconds = _timed(fit, repeats)
                proba = np.asarray(model.predict_proba(Xte))[:, 1]
                rows.append(
                    Row(
                        name,
                        label,
                        float(accuracy_score(yte, model.predict(Xte))),
                        float(roc_auc_score(yte, proba)),
                        seconds,
                        int(model.n_iter_),
                        (int(Xtr.shape[0]), int(Xtr.shape[1])),
                        setting,
                        first,
                    )
                )
    return rows


def markdown(rows: Sequence[Row]) -> str:
    """The table, with each nnbin row's accuracy gap and time ratio to scikit-learn's."""
    out = [
        "| data (train N x D) | setting | model | epochs | accuracy | ROC AUC | first fit s "
        "| fit s | vs sklearn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = {(r.dataset, r.setting): r for r in rows if r.model.startswith("sklearn")}
    for r in rows:
        ref = base.get((r.dataset, r.setting))
        versus = ""
        if ref is not None and r is not ref:
            versus = (
                f"{100 * (r.accuracy - ref.accuracy):+.1f} pt, "
                f"{r.fit_seconds / ref.fit_seconds:.2f}x time"
            )
        out.append(
            f"| {r.dataset} ({r.shape[0]:,} x {r.shape[1]}) | {r.setting} | {r.model} | "
            f"{r.epochs} | {r.accuracy:.4f} | {r.roc_auc:.4f} | {r.first_seconds:.2f} | "
            f"{r.fit_seconds:.2f} | {versus} |"
        )
    return "\n".join(out)


# --- the command ----------------------------------------------------------------------------

HELP = "accuracy and fit time beside scikit-learn's MLPClassifier, in one run"


DESCRIPTION = (
    "Held-out accuracy, ROC AUC and fit time of BinaryMLPClassifier on each "
    "backend beside scikit-learn's MLPClassifier with the same architecture (100 ReLU "
    "units), batch size (200) and epochs, in each setting (Adam at 1e-3; SGD with the "
    "invscaling and the adaptive schedules; L-BFGS, full batch), on the breast-cancer data, "
    "make_moons(noise=0.2) and make_classification(200,000 x 20); the first fit's time "
    "(JAX compiles in it) is shown apart; needs nnbin[sklearn]."
)


def flags(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--datasets",
        default="breast-cancer,moons,classification-200k",
        help="comma-separated (breast-cancer,moons,classification-200k)",
    )
    q.add_argument("--backends", default="numpy,jax", help="comma-separated (numpy,jax)")
    q.add_argument("--repeats", type=whole_number_type(1), default=1, help="timed fits (1)")
    q.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"comma-separated ({','.join(SETTINGS)})",
    )


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("sklearn") is None:  # said first: it is what the command is
        raise MissingDependencyError(
            "the quality benchmark compares with scikit-learn: pip install 'nnbin[sklearn]'"
        )
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if not names:
        raise ValueError(f"--datasets names no data set; choose from {', '.join(DATASETS)}")
    if unknown:
        raise ValueError(
            f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}"
        )
    backends = [get_backend(n.strip()).name for n in args.backends.split(",") if n.strip()]
    if not backends:
        raise ValueError("--backends names no backend; for example --backends numpy,jax")
    settings = [n.strip() for n in args.settings.split(",") if n.strip()]
    if not settings or any(n not in SETTINGS for n in settings):
        raise ValueError(f"--settings: choose from {', '.join(SETTINGS)}; got {args.settings!r}")
    for name in backends:
        get_backend(name).tools.enable_dtype(get_backend(name).default_dtype)
    print(markdown(compare(names, backends, repeats=args.repeats, settings=settings)))
    return 0
