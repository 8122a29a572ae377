"""``nnbin plot``: a saved model's decision boundary beside its loss curve."""

from __future__ import annotations

import argparse
import os

from .common import DATA_FORMATS, architecture_text, can_plot, data_flags, load_model, model_flags

HELP = "draw a saved model: boundary and loss curve"


DESCRIPTION = (
    "The decision-boundary figure of a saved model (class "
    "densities, samples, probability curve and its 0.5 crossing for one "
    "feature; a probability heat map with the 0.5 contour for two) beside "
    "the loss curve from its training history."
)


def flags(pl: argparse.ArgumentParser) -> None:
    model_flags(pl, "evaluate")
    data_flags(
        pl,
        f"data to draw with it (optional): {DATA_FORMATS}",
        "(default: one named label/y/target/class)",
    )
    pl.add_argument("--out", required=True, metavar="FIGURE", help="the image to write (.png)")


def run(args: argparse.Namespace) -> int:
    from ..data import load_data
    from ..files import check_outputs
    from ..plot import boundary_figure
    from ..validate import counted

    if args.label is not None and not args.data:
        raise ValueError("--label names a column of --data: give --data FILE as well")
    if not can_plot():
        raise ValueError("plot needs matplotlib and seaborn: pip install 'nnbin[plot]'")
    check_outputs({"--out": args.out}, {"--model": args.model, "--data": args.data})
    be, model = load_model(args)
    if args.data:
        X, y, names = load_data(args.data, args.label, require_labels=False)
    else:
        import numpy as np

        if model.n_features == 2:
            raise ValueError("a two-feature heat map needs --data to set its extent")
        X, y, names = np.zeros((0, model.n_features)), None, None
    loss = "" if model.final_loss is None else f", final loss {model.final_loss:.3g}"
    cross = boundary_figure(
        model.params,
        X,
        y,
        args.out,
        backend=be,
        history=model.history or None,
        title=f"nnbin model {os.path.basename(args.model)}: "
        f"{counted(model.n_features, 'feature')}, "
        f"{architecture_text(model.hidden, model.activation)}{loss}",
        activation=model.activation,
        names=names,
    )
    if model.n_features == 1:
        print(
            f"decision boundary (p = 0.5) at x = "
            f"{', '.join(f'{c:.3f}' for c in cross) or 'none in [-10, 10]'}"
        )
    print(f"figure written to {args.out}")
    return 0
