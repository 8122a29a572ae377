"""Numbers unchanged: the seed job and deeper runs, on every CPU backend and both dtypes,
written to one .npz, or compared with one written before (``numpy.array_equal``, every
array). Run it on the commit before a change and on the change, back to back:

    OMP_NUM_THREADS=1 python tests/numbers_unchanged.py write before.npz
    OMP_NUM_THREADS=1 python tests/numbers_unchanged.py compare before.npz

``--backends numpy,strict`` runs fewer. It imports nnbin from where Python finds it (run it
with ``PYTHONPATH=src:.`` in a worktree of the older commit). Only nnbin's public API is
used, so the same script runs on both sides of a change.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("JAX_ENABLE_X64", "1")  # JAX's float64 runs too

import numpy as np

import nnbin

BACKENDS = ("numpy", "strict", "jax", "torch", "dask")


def _data(n: int = 600, d: int = 3, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = ((X[:, :1] * X[:, 1:2] + 0.3 * X[:, 2:3]) > 0).astype(np.float64)
    return X, y


#: name -> (data, options): the seed job and the deeper runs (each with the features it covers)
RUNS = {
    "seed job": (None, {"steps": 1000, "log_every": 100}),
    "adam, mini-batches, early stopping": (
        "data",
        {"hidden": (16, 8), "activation": "relu", "optimizer": "adam", "lr": 0.01,
         "batch_size": 64, "early_stopping": True, "steps": 30, "seed": 2},
    ),
    "nesterov, loss rule, invscaling": (
        "data",
        {"hidden": 12, "activation": "tanh", "optimizer": "momentum", "nesterov": True,
         "lr": 0.05, "batch_size": 100, "n_iter_no_change": 3, "learning_rate": "invscaling",
         "alpha": 1e-3, "steps": 25, "seed": 3},
    ),
    "adaptive": (
        "data",
        {"hidden": 10, "activation": "relu", "optimizer": "momentum", "lr": 0.3,
         "batch_size": 50, "n_iter_no_change": 2, "learning_rate": "adaptive", "steps": 25},
    ),
    "weighted early stopping": (
        "weighted",
        {"hidden": 8, "activation": "relu", "optimizer": "adam", "lr": 0.02,
         "batch_size": 80, "early_stopping": True, "n_iter_no_change": 4, "steps": 20},
    ),
    "lbfgs": (
        "data",
        {"hidden": (6, 5), "activation": "tanh", "optimizer": "lbfgs", "alpha": 1e-2,
         "steps": 40},
    ),
}  # fmt: skip


def run_all(backends: list[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    X, y = _data()
    w = np.random.default_rng(9).uniform(0.2, 3.0, size=X.shape[0])
    seedX, seedy = nnbin.two_gaussians(n_per_class=10_000, seed=0)
    for backend in backends:
        be = nnbin.get_backend(backend)
        for dtype in be.dtypes:
            for name, (which, options) in RUNS.items():
                opts = dict(options)
                if backend == "dask" and name == "seed job":
                    opts["steps"] = 100  # Dask schedules every step: fewer of them
                Xr, yr = (seedX, seedy) if which is None else (X, y)
                weights = w if which == "weighted" else None
                r = nnbin.train(Xr, yr, backend=backend, dtype=dtype, sample_weight=weights, **opts)
                key = f"{backend}/{dtype}/{name}"
                for i, p in enumerate(r.params):
                    out[f"{key}/param{i}"] = np.asarray(be.to_host(p))
                out[f"{key}/history"] = np.array(r.history, dtype=np.float64).reshape(-1, 2)
                out[f"{key}/final"] = np.array([r.final_loss, r.n_iter])
                out[f"{key}/scores"] = np.array(r.validation_scores, dtype=np.float64)
                print(f"{key}: final loss {r.final_loss:.12g}, {r.n_iter} steps", flush=True)
    # the estimator: fit (Adam, early stopping) and partial_fit calls (sgd, adaptive: the rule
    # across calls), on each backend's arrays through backend=
    from nnbin import BinaryMLPClassifier

    labels = y[:, 0].astype(int)
    for backend in backends:
        fits = {
            "fit": BinaryMLPClassifier(hidden_layer_sizes=(9,), max_iter=15, early_stopping=True,
                                       random_state=0, backend=backend, dtype="float64"),
            "partial_fit": BinaryMLPClassifier(hidden_layer_sizes=(7,), solver="sgd",
                                               learning_rate="adaptive", n_iter_no_change=1,
                                               learning_rate_init=0.5, random_state=1,
                                               backend=backend, dtype="float64"),
        }  # fmt: skip
        for how, est in fits.items():
            if how == "fit":
                est.fit(X, labels)
            else:
                for k in range(8):
                    est.partial_fit(
                        X[k * 75 : (k + 1) * 75], labels[k * 75 : (k + 1) * 75], classes=[0, 1]
                    )
            key = f"{backend}/estimator {how}"
            for i, a in enumerate([*est.coefs_, *est.intercepts_]):
                out[f"{key}/array{i}"] = np.asarray(a)
            out[f"{key}/curve"] = np.array(est.loss_curve_)
            out[f"{key}/rate"] = np.array([est._optimizer.learning_rate, est.n_iter_])
    # sparse X, on numpy (the backend that takes it)
    import scipy.sparse

    Xs = scipy.sparse.csr_matrix(np.where(np.abs(X) > 0.8, X, 0.0))
    r = nnbin.train(Xs, y, hidden=7, activation="relu", optimizer="adam", lr=0.01,
                    batch_size=64, steps=10)  # fmt: skip
    for i, p in enumerate(r.params):
        out[f"numpy/sparse/param{i}"] = np.asarray(p)
    out["numpy/sparse/history"] = np.array(r.history, dtype=np.float64).reshape(-1, 2)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("write", "compare"))
    parser.add_argument("path")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args(argv)
    got = run_all(args.backends.split(","))
    if args.action == "write":
        np.savez(args.path, **got)
        print(f"{len(got)} arrays written to {args.path}")
        return 0
    with np.load(args.path) as before:
        old = {k: before[k] for k in before.files}
    missing = sorted(set(old) ^ set(got))
    differ = [k for k in sorted(set(old) & set(got)) if not np.array_equal(old[k], got[k])]
    for k in missing:
        print(f"only on one side: {k}")
    for k in differ:
        print(f"DIFFERENT: {k}")
    print(f"{len(got)} arrays compared with numpy.array_equal: {len(differ)} different, "
          f"{len(missing)} on one side only")  # fmt: skip
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
