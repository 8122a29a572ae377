"""``nnbin quality``: held-out accuracy and fit time beside scikit-learn's MLPClassifier."""

from __future__ import annotations

import argparse

from ..backend import get_backend
from .common import whole_number_type

HELP = "accuracy and fit time beside scikit-learn's MLPClassifier, in one run"


DESCRIPTION = (
    "Held-out accuracy, ROC AUC and fit time of BinaryMLPClassifier on each "
    "backend beside scikit-learn's MLPClassifier with the same architecture (100 ReLU "
    "units), optimizer (Adam, 1e-3), batch size (200) and epochs, on the breast-cancer "
    "data, make_moons(noise=0.2) and make_classification(200,000 x 20); needs "
    "nnbin[sklearn]."
)


def flags(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--datasets",
        default="breast-cancer,moons,classification-200k",
        help="comma-separated (breast-cancer,moons,classification-200k)",
    )
    q.add_argument("--backends", default="numpy,jax", help="comma-separated (numpy,jax)")
    q.add_argument("--repeats", type=whole_number_type(1), default=1, help="timed fits (1)")


def run(args: argparse.Namespace) -> int:
    from .. import quality

    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in quality.DATASETS]
    if unknown:
        raise ValueError(
            f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(quality.DATASETS)}"
        )
    backends = [get_backend(n.strip()).name for n in args.backends.split(",") if n.strip()]
    for name in backends:
        get_backend(name).enable_dtype(get_backend(name).default_dtype)
    print(quality.markdown(quality.run(names, backends, repeats=args.repeats)))
    return 0
