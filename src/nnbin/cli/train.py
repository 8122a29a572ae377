"""``nnbin train``: train on the seed job's data or a data file, print the loss as it goes,
the final loss and the training accuracy, save the model and draw the decision boundary.
The training flags come from the options table (:mod:`nnbin.options`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from .. import options
from ..backend import get_backend
from .common import DATA_FORMATS, can_plot, data_flags, whole_number_type

HELP = "train (the seed job, or --data) and draw the decision boundary"


DESCRIPTION = (
    "Train on the seed job's data (10,000 samples of N(-6,1) labelled 0 and "
    "10,000 of N(6,1) labelled 1), or on --data: by default 1 input -> 32 sigmoid units "
    "-> 1 sigmoid output, full-batch gradient descent on mean binary cross-entropy; "
    "--hidden 64,32 --activation relu --optimizer adam --batch-size 256 --alpha ... "
    "--early-stopping train a deeper network otherwise (each step an epoch with "
    "--batch-size). Prints the loss every LOG_EVERY steps and the training accuracy, "
    "and writes the decision-boundary figure."
)


def flags(t: argparse.ArgumentParser) -> None:
    options.add_flags(t)  # every training option: its flag, check, default and help
    t.add_argument(
        "--n-per-class",
        type=whole_number_type(1),
        default=10_000,
        help="samples per class of the seed data (10000)",
    )
    data_flags(
        t,
        f"train on your data instead: {DATA_FORMATS} (.npy: the last column the label; .npz: "
        "arrays X, y); features plus a 0/1 label column",
        "(default: label/y/target/class, else the last)",
    )
    t.add_argument("--save", metavar="MODEL", help="save the model (safetensors) to MODEL")
    t.add_argument(
        "--plot",
        default=None,
        metavar="FIGURE",
        help="where to write the decision-boundary figure (boundary.png; "
        "drawn for one or two features; needs nnbin[plot])",
    )
    t.add_argument("--no-plot", action="store_true", help="do not draw the figure")
    t.add_argument(
        "--quiet",
        action="store_true",
        help="print only the summary (no loss lines, no progress bar)",
    )


class Progress:
    """Loss lines, or a progress bar (rich) when standard output is a terminal."""

    def __init__(self, steps: int, quiet: bool) -> None:
        self.quiet, self.steps, self.t0, self.bar = quiet, steps, time.perf_counter(), None
        if not quiet and sys.stdout.isatty():
            try:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                self.bar = Progress(
                    TextColumn("training"),
                    BarColumn(),
                    TextColumn("{task.completed}/{task.total} steps"),
                    TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(),
                )
                self.task = self.bar.add_task("train", total=steps, info="")
                self.bar.start()
            except ImportError:
                self.bar = None

    def __call__(self, step: int, loss: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            rate = step / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, completed=step, info=f"loss {loss:.4g}  {rate:,.0f} steps/s")
            self.bar.console.print(f"step {step:>6d}  loss {loss:.10g}")
        else:
            print(f"step {step:>6d}  loss {loss:.10g}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=self.steps)
            self.bar.stop()


def run(args: argparse.Namespace) -> int:
    from ..api import accuracy
    from ..data import load_data, two_gaussians
    from ..files import check_outputs
    from ..training import train

    if args.label is not None and not args.data:
        raise ValueError("--label names a column of --data: give --data FILE as well")
    plot_asked = args.plot is not None
    figure = None if args.no_plot else (args.plot or "boundary.png")
    if figure is not None and not can_plot():
        if plot_asked:
            raise ValueError(
                "--plot needs matplotlib and seaborn: pip install 'nnbin[plot]' "
                "(or leave out --plot)"
            )
        figure = None  # the default figure, without the plotting extra: a note at the end
    check_outputs({"--save": args.save, "--plot": figure}, {"--data": args.data})
    be = get_backend(args.backend)
    if args.dtype:
        be.tools.enable_dtype(args.dtype)  # the command line owns its process
    _persistent_cache(be)
    if args.data:
        X, y, names = load_data(args.data, args.label)
        assert y is not None
    else:
        X, y = two_gaussians(args.n_per_class, seed=args.seed)
        names = None
    no_figure = "drawing it needs matplotlib and seaborn: pip install 'nnbin[plot]'"
    if figure is not None:
        from ..plot import too_large_to_plot

        why = too_large_to_plot(X)
        if why is not None and plot_asked:  # before training: nothing is written
            raise ValueError(f"--plot: {why} (or leave out --plot)")
        if why is not None:  # the default figure: train, save, and say why there is none
            figure, no_figure = None, why
    progress = Progress(args.steps, args.quiet)
    try:
        result = train(X, y, on_log=progress, **{**options.from_args(args), "backend": be.name})
    finally:
        progress.close()
    Xd, yd = be.asarray(X, result.dtype), be.asarray(y, result.dtype)
    acc = accuracy(result.params, Xd, yd)
    if result.message:  # L-BFGS ends by its own rule
        print(f"L-BFGS ended after {result.n_iter} iterations: {result.message}")
    elif result.n_iter < args.steps:
        what = "held-out accuracy" if args.early_stopping else "training loss"
        patience = options.Config(n_iter_no_change=args.n_iter_no_change).patience
        print(
            f"stopped after {result.n_iter} epochs: the {what} did not improve by --tol "
            f"{args.tol:g} for more than {patience} epochs in a row"
        )
    if result.best_validation_score is not None:
        best = result.validation_scores.index(result.best_validation_score) + 1
        print(
            f"kept the parameters of epoch {best}, the best held-out accuracy "
            f"({result.best_validation_score:.4f}); the final loss is theirs"
        )
    print(
        f"final loss {result.final_loss:.10g}  training accuracy {acc:.4f}  "
        f"({result.backend}, {result.dtype}, {result.loop}: "
        f"{result.run_seconds:.2f} s run, {result.compile_seconds:.2f} s compile)"
    )
    if args.save:
        from ..modelfile import save_result

        save_result(args.save, result)
        print(f"model saved to {args.save}")
    if figure is None and not args.no_plot:
        print(f"no figure: {no_figure}", file=sys.stderr)
    if figure is not None and X.shape[1] <= 2:
        from ..plot import boundary_figure

        cross = boundary_figure(
            result.params,
            X,
            y,
            figure,
            backend=be,
            title=f"nnbin: {result.n_iter} steps on {result.backend} ({result.dtype}), "
            f"final loss {result.final_loss:.3g}",
            activation=result.activation,
            names=names,
        )
        if X.shape[1] == 1:
            where = ", ".join(f"{c:.3f}" for c in cross) or "none in [-10, 10]"
            print(f"decision boundary (p = 0.5) at x = {where}; figure written to {figure}")
        else:
            print(f"figure written to {figure}")
    return 0


def _persistent_cache(be: Any) -> None:
    """Compiled runs kept between commands where the backend can (JAX), in
    $NNBIN_CACHE_DIR, else $XDG_CACHE_HOME/nnbin, else ~/.cache/nnbin; NNBIN_CACHE_DIR=off
    turns it off. A cache folder that cannot be made is skipped (compiling as before)."""
    where = os.environ.get("NNBIN_CACHE_DIR", "")
    if not be.about.has_persistent_cache or where.lower() in ("off", "0", "none"):
        return
    base = where or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "") or os.path.expanduser("~/.cache"), "nnbin"
    )
    folder = os.path.join(base, f"{be.name}-compiled")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return
    be.tools.use_persistent_cache(folder)
