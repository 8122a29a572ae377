"""``nnbin predict``: P(y = 1 | x) and the label at 0.5 for every row of a data file."""

from __future__ import annotations

import argparse
import io
import sys

from .common import DATA_FORMATS, data_flags, load_model, model_flags

HELP = "probabilities and labels from a saved model"


DESCRIPTION = (
    "Write P(y = 1 | x) and the label at 0.5 for every row of "
    "FILE as CSV (columns: probability,label), to --out or stdout."
)


def flags(pr: argparse.ArgumentParser) -> None:
    model_flags(pr, "predict")
    data_flags(
        pr,
        f"{DATA_FORMATS}; a label column (--label, else one named label/y/target/class) is left "
        "out; every column must be numeric",
        "to leave out",
        required=True,
    )
    pr.add_argument("--out", metavar="FILE", help="CSV to write (default, or '-': standard output)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..api import predict_proba
    from ..data import load_data
    from ..files import atomic_write, check_outputs
    from ..validate import counted

    to_stdout = args.out in (None, "-")
    check_outputs(
        {"--out": None if to_stdout else args.out}, {"--model": args.model, "--data": args.data}
    )
    be, model = load_model(args)
    X, y, _ = load_data(args.data, args.label, require_labels=False)
    if X.shape[1] != model.n_features:
        hint = (
            " (if one column is the label, name it with --label)"
            if y is None and X.shape[1] == model.n_features + 1
            else ""
        )
        raise ValueError(
            f"the model takes {counted(model.n_features, 'feature')} but {args.data} has "
            f"{X.shape[1]}{hint}"
        )
    Xd = be.asarray(X, model.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # checked below, in one line
        p = be.to_host(predict_proba(model.params, Xd, activation=model.activation))[:, 0]
    bad = np.flatnonzero(~np.isfinite(p))  # finite features whose weighted sum overflows
    if bad.size:
        raise ValueError(
            f"{args.data}: the features of data row {int(bad[0]) + 1} are too large for the "
            f"model's {model.dtype} arithmetic (a weighted sum of them overflows); rescale "
            "the features (standardise them as for training) — nothing was written"
        )
    buf = io.StringIO()
    buf.write("probability,label\n")
    for v in p.astype(np.float64):
        buf.write(f"{v:.17g},{int(v >= 0.5)}\n")
    if not to_stdout:
        text = buf.getvalue().encode()
        atomic_write(args.out, lambda fh: fh.write(text))
        print(f"{len(p)} predictions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(buf.getvalue())
    return 0
