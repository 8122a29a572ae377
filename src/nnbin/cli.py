"""The ``nnbin`` command line."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__, validate
from .backend import ENV_VAR, available_names, backend_class, get_backend, is_installed
from .bench import BASELINES
from .errors import NnbinError


def _int_at_least(least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [least, most], checked by nnbin.validate (the
    checks the API and the estimator make), its message as argparse's own."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        try:
            value = validate.whole_number("the value", value, least)
        except NnbinError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("the value ")) from None
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be <= {most:,}, got {value:,}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)
_step_count = _int_at_least(0, validate.MAX_STEPS)


def _widths(text: str) -> int | tuple[int, ...]:
    """``32`` or ``64,32``: one hidden width, or one per layer."""
    parts = [p.strip() for p in text.split(",")]
    sizes = tuple(_positive_int(p) for p in parts)
    return sizes[0] if len(sizes) == 1 else sizes


def _real_between(low: float, high: float) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}], got {text}")
        return value

    return parse


_fraction = _real_between(0.0, 1.0)
_non_negative = _real_between(0.0, math.inf)


def _step_size(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    try:
        rate: float = validate.step_size(value)
    except NnbinError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}") from None
    return rate


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nnbin",
        description="A small neural-network binary classifier, written once against the "
        "Python array API, with a hand-written backward pass. "
        f"Each command's backend comes from its --backend, else ${ENV_VAR}, else numpy.",
    )
    parser.add_argument("--version", action="version", version=f"nnbin {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train (the seed job, or --data) and draw the decision boundary",
        description="Train on the seed job's data (10,000 samples of N(-6,1) labelled 0 and "
        "10,000 of N(6,1) labelled 1), or on --data: by default 1 input -> 32 sigmoid units "
        "-> 1 sigmoid output, full-batch gradient descent on mean binary cross-entropy; "
        "--hidden 64,32 --activation relu --optimizer adam --batch-size 256 --alpha ... "
        "--early-stopping train a deeper network otherwise (each step an epoch with "
        "--batch-size). Prints the loss every LOG_EVERY steps and the training accuracy, "
        "and writes the decision-boundary figure.",
    )
    t.add_argument(
        "--backend",
        help=f"array backend (default: ${ENV_VAR}, else numpy); "
        f"one of {', '.join(available_names())}",
    )
    t.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help="working dtype (default: the backend's, float64 for numpy)",
    )
    t.add_argument(
        "--hidden",
        type=_widths,
        default=32,
        metavar="H[,H...]",
        help="hidden units, or one width per hidden layer: 64,32 (32)",
    )
    t.add_argument(
        "--activation",
        choices=["sigmoid", "logistic", "tanh", "relu"],
        default="sigmoid",
        help="hidden-layer activation (sigmoid)",
    )
    t.add_argument(
        "--init",
        choices=["normal", "glorot", "he"],
        help="initial weights (default: normal for sigmoid, glorot for tanh, he for relu)",
    )
    t.add_argument("--lr", type=_step_size, default=1.0, help="step size (1.0)")
    t.add_argument(
        "--steps",
        type=_step_count,
        default=1000,
        help="full-batch steps, or epochs with --batch-size (1000)",
    )
    t.add_argument(
        "--optimizer",
        choices=["gd", "momentum", "adam"],
        default="gd",
        help="gradient descent, momentum (see --momentum, --nesterov) or Adam (gd)",
    )
    t.add_argument("--momentum", type=_fraction, default=0.9, help="momentum (0.9)")
    t.add_argument("--nesterov", action="store_true", help="Nesterov's momentum")
    t.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="B",
        help="mini-batches of B samples, reshuffled (seeded) each epoch (default: full batch)",
    )
    t.add_argument(
        "--alpha", type=_non_negative, default=0.0, help="L2 penalty, scikit-learn's scaling (0)"
    )
    t.add_argument(
        "--early-stopping",
        action="store_true",
        help="hold out --validation-fraction of the samples; stop when their accuracy stops "
        "improving (keeps the best parameters)",
    )
    t.add_argument("--validation-fraction", type=_fraction, default=0.1, help="held out (0.1)")
    t.add_argument(
        "--n-iter-no-change",
        type=_positive_int,
        metavar="K",
        help="stop after more than K epochs without improvement by --tol (default: never; "
        "10 with --early-stopping)",
    )
    t.add_argument("--tol", type=_non_negative, default=1e-4, help="improvement (1e-4)")
    t.add_argument(
        "--log-every",
        type=_step_count,
        default=100,
        help="print the loss every this many steps; 0: never (100)",
    )
    t.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seed of the data and the initial weights (0)",
    )
    t.add_argument(
        "--n-per-class",
        type=_positive_int,
        default=10_000,
        help="samples per class of the seed data (10000)",
    )
    t.add_argument(
        "--data",
        metavar="FILE",
        help="train on your data instead: CSV with a header, .npy (last column "
        "the label) or .npz (arrays X, y); features plus a 0/1 label column",
    )
    t.add_argument(
        "--label",
        metavar="NAME",
        help="the CSV label column (default: label/y/target/class, else the last)",
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
        "--data-parallel",
        type=_positive_int,
        metavar="K",
        default=None,
        help="split the samples over K devices, parameters replicated (jax only)",
    )
    t.add_argument(
        "--no-fused",
        action="store_true",
        help="run the array-API core even where a fused GPU step applies (cupy; "
        "torch/jax on CUDA with cupy installed)",
    )
    t.add_argument(
        "--quiet",
        action="store_true",
        help="print only the summary (no loss lines, no progress bar)",
    )

    pr = sub.add_parser(
        "predict",
        help="probabilities and labels from a saved model",
        description="Write P(y = 1 | x) and the label at 0.5 for every row of "
        "FILE as CSV (columns: probability,label), to --out or stdout.",
    )
    pr.add_argument("--model", required=True, help="a model file saved by nnbin train --save")
    pr.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="CSV with a header, .npy or .npz; a label column (--label, else one "
        "named label/y/target/class) is left out; every column must be numeric",
    )
    pr.add_argument("--label", metavar="NAME", help="the CSV label column to leave out")
    pr.add_argument("--out", metavar="FILE", help="CSV to write (default, or '-': standard output)")
    pr.add_argument("--backend", help="backend to predict on (default: $NNBIN_BACKEND, numpy)")

    ex = sub.add_parser(
        "export",
        help="write a saved model as an ONNX inference graph",
        description="The inference graph of a saved model as ONNX, built by running "
        "nnbin's own forward pass on ndonnx arrays: input X (any number of rows, the "
        "model's features, its dtype), outputs probability (N, 1) and label (N, 1, int64). "
        "Needs pip install 'nnbin[onnx]'.",
    )
    ex.add_argument("model", metavar="MODEL", help="a model file saved by nnbin train --save")
    ex.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")

    cf = sub.add_parser(
        "conformance",
        help="run the conformance suite on one backend (pytest underneath)",
        description="The conformance suite that ships with nnbin, on the backend named "
        "(built in, or registered by another package through the nnbin.backends entry "
        "point), against nnbin's independent NumPy reference. Further arguments go to "
        "pytest (for example -x, -k NAME, -q); the exit status is pytest's. The report "
        "lists every check with its outcome and every skip with its reason. "
        "Needs pip install 'nnbin[test]'.",
    )
    cf.add_argument("--backend", required=True, help="the backend's registered name")
    cf.epilog = "Any other arguments are passed to pytest: nnbin conformance --backend NAME -x -q"

    pl = sub.add_parser(
        "plot",
        help="draw a saved model: boundary and loss curve",
        description="The decision-boundary figure of a saved model (class "
        "densities, samples, probability curve and its 0.5 crossing for one "
        "feature; a probability heat map with the 0.5 contour for two) beside "
        "the loss curve from its training history.",
    )
    pl.add_argument("--model", required=True, help="a model file saved by nnbin train --save")
    pl.add_argument("--data", metavar="FILE", help="data to draw with it (optional)")
    pl.add_argument("--label", metavar="NAME", help="the CSV label column")
    pl.add_argument("--out", required=True, metavar="FIGURE", help="the image to write (.png)")
    pl.add_argument("--backend", help="backend to evaluate on (default: $NNBIN_BACKEND)")

    bench = sub.add_parser(
        "bench",
        help="measure every backend beside baselines, in one run",
        description="Sample-steps per second (N x steps / seconds) of each backend, size and "
        "dtype, median of REPEATS timed runs after a warm-up, the device synchronised before "
        "the clock is read; compile/first-call time and peak memory (in (N, H) arrays) "
        "reported apart. Baselines measured in the same run: the seed-style NumPy loop "
        "(float64), jax.grad + fori_loop and PyTorch autograd where installed. Every nnbin "
        "figure is also a ratio to the seed loop and to the fastest baseline.",
    )
    bench.add_argument(
        "--backends",
        help="comma-separated (default: every runnable one but "
        "dask, whose per-step scheduling is measured by name)",
    )
    bench.add_argument(
        "--sizes",
        default="20000,2000000,20000000",
        help="comma-separated N (20000,2000000,20000000)",
    )
    bench.add_argument("--dtypes", default="float32,float64", help="(float32,float64)")
    bench.add_argument(
        "--steps",
        type=_int_at_least(1, validate.MAX_STEPS),
        default=None,
        help="steps per timing (default: about 2e7 / N, 2 to 1000)",
    )
    bench.add_argument("--repeats", type=_positive_int, default=5, help="timed runs (5)")
    bench.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help=f"comma-separated, or 'none' ({','.join(BASELINES)})",
    )
    bench.add_argument("--json", metavar="FILE", help="write every raw timing and the machine")
    bench.add_argument("--plot", metavar="FILE", help="throughput against N, log-log")
    bench.add_argument("--markdown", action="store_true", help="print the table as Markdown")

    q = sub.add_parser(
        "quality",
        help="accuracy and fit time beside scikit-learn's MLPClassifier, in one run",
        description="Held-out accuracy, ROC AUC and fit time of BinaryMLPClassifier on each "
        "backend beside scikit-learn's MLPClassifier with the same architecture (100 ReLU "
        "units), optimizer (Adam, 1e-3), batch size (200) and epochs, on the breast-cancer "
        "data, make_moons(noise=0.2) and make_classification(200,000 x 20); needs "
        "nnbin[sklearn].",
    )
    q.add_argument(
        "--datasets",
        default="breast-cancer,moons,classification-200k",
        help="comma-separated (breast-cancer,moons,classification-200k)",
    )
    q.add_argument("--backends", default="numpy,jax", help="comma-separated (numpy,jax)")
    q.add_argument("--repeats", type=_positive_int, default=1, help="timed fits (1)")

    b = sub.add_parser(
        "backends",
        help="list the registered backends",
        description="Every registered backend, whether it can run here, its "
        f"version and devices, and which one ${ENV_VAR} selects now.",
    )
    b.set_defaults(command="backends")
    return parser


class _Progress:
    """Loss lines, or a progress bar (rich) when standard output is a terminal."""

    def __init__(self, steps: int, quiet: bool) -> None:
        import time

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
        import time

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


def _train(args: argparse.Namespace) -> int:
    from .api import accuracy
    from .data import load_data, two_gaussians
    from .files import check_outputs
    from .training import train

    if args.label is not None and not args.data:
        raise ValueError("--label names a column of --data: give --data FILE as well")
    plot_asked = args.plot is not None
    figure = None if args.no_plot else (args.plot or "boundary.png")
    if figure is not None and not _can_plot():
        if plot_asked:
            raise ValueError(
                "--plot needs matplotlib and seaborn: pip install 'nnbin[plot]' "
                "(or leave out --plot)"
            )
        figure = None  # the default figure, without the plotting extra: a note at the end
    check_outputs({"--save": args.save, "--plot": figure}, {"--data": args.data})
    be = get_backend(args.backend)
    if args.dtype:
        be.enable_dtype(args.dtype)  # the command line owns its process
    _persistent_cache(be)
    if args.data:
        X, y, _ = load_data(args.data, args.label)
        assert y is not None
    else:
        X, y = two_gaussians(args.n_per_class, seed=args.seed)
    progress = _Progress(args.steps, args.quiet)
    try:
        result = train(
            X,
            y,
            hidden=args.hidden,
            lr=args.lr,
            steps=args.steps,
            log_every=args.log_every,
            seed=args.seed,
            backend=be.name,
            dtype=args.dtype,
            data_parallel=args.data_parallel or False,
            fused=False if args.no_fused else None,
            on_log=progress,
            activation=args.activation,
            init=args.init,
            optimizer=args.optimizer,
            momentum=args.momentum,
            nesterov=args.nesterov,
            batch_size=args.batch_size,
            alpha=args.alpha,
            early_stopping=args.early_stopping,
            validation_fraction=args.validation_fraction,
            n_iter_no_change=args.n_iter_no_change,
            tol=args.tol,
        )
    finally:
        progress.close()
    Xd, yd = be.asarray(X, result.dtype), be.asarray(y, result.dtype)
    acc = accuracy(result.params, Xd, yd, activation=result.activation)
    if result.n_iter < args.steps:
        print(f"stopped after {result.n_iter} epochs: no improvement by --tol")
    print(
        f"final loss {result.final_loss:.10g}  training accuracy {acc:.4f}  "
        f"({result.backend}, {result.dtype}, {result.loop}: "
        f"{result.run_seconds:.2f} s run, {result.compile_seconds:.2f} s compile)"
    )
    if args.save:
        from .modelfile import save_result

        save_result(args.save, result)
        print(f"model saved to {args.save}")
    if figure is None and not args.no_plot:
        print(
            "no figure: drawing it needs matplotlib and seaborn: pip install 'nnbin[plot]'",
            file=sys.stderr,
        )
    if figure is not None and X.shape[1] <= 2:
        from .plot import boundary_figure

        cross = boundary_figure(
            result.params,
            X,
            y,
            figure,
            backend=be,
            title=f"nnbin: {result.n_iter} steps on {result.backend} ({result.dtype}), "
            f"final loss {result.final_loss:.3g}",
            activation=result.activation,
        )
        if X.shape[1] == 1:
            where = ", ".join(f"{c:.3f}" for c in cross) or "none in [-10, 10]"
            print(f"decision boundary (p = 0.5) at x = {where}; figure written to {figure}")
        else:
            print(f"figure written to {figure}")
    return 0


def _persistent_cache(be: object) -> None:
    """Compiled runs kept between commands where the backend can (JAX), in
    $NNBIN_CACHE_DIR, else $XDG_CACHE_HOME/nnbin, else ~/.cache/nnbin; NNBIN_CACHE_DIR=off
    turns it off. A cache folder that cannot be made is skipped (compiling as before)."""
    use = getattr(be, "use_persistent_cache", None)
    where = os.environ.get("NNBIN_CACHE_DIR", "")
    if use is None or where.lower() in ("off", "0", "none"):
        return
    base = where or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "") or os.path.expanduser("~/.cache"), "nnbin"
    )
    folder = os.path.join(base, f"{getattr(be, 'name', 'backend')}-compiled")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return
    use(folder)


def _widths_text(hidden: int | tuple[int, ...]) -> str:
    return str(hidden) if isinstance(hidden, int) else ",".join(map(str, hidden))


def _can_plot() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("matplotlib", "seaborn"))


def _predict(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from .api import predict_proba
    from .data import load_data
    from .files import check_outputs
    from .modelfile import load

    to_stdout = args.out in (None, "-")
    check_outputs(
        {"--out": None if to_stdout else args.out}, {"--model": args.model, "--data": args.data}
    )
    be = get_backend(args.backend)
    be.enable_dtype("float64")  # a float64 model must load as float64 (JAX: 64-bit mode)
    model = load(args.model, backend=be.name)
    X, y, _ = load_data(args.data, args.label, require_labels=False)
    if X.shape[1] != model.n_features:
        hint = (
            " (if one column is the label, name it with --label)"
            if y is None and X.shape[1] == model.n_features + 1
            else ""
        )
        raise ValueError(
            f"the model takes {model.n_features} feature(s) but {args.data} has {X.shape[1]}{hint}"
        )
    Xd = be.asarray(X, model.dtype)
    p = be.to_host(predict_proba(model.params, Xd, activation=model.activation))[:, 0]
    buf = io.StringIO()
    buf.write("probability,label\n")
    for v in p.astype(np.float64):
        buf.write(f"{v:.17g},{int(v >= 0.5)}\n")
    if not to_stdout:
        from .files import atomic_write

        text = buf.getvalue().encode()
        atomic_write(args.out, lambda fh: fh.write(text))
        print(f"{len(p)} predictions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(buf.getvalue())
    return 0


def _export(args: argparse.Namespace) -> int:
    from . import export
    from .files import check_outputs
    from .modelfile import load

    export.require()  # before anything else: one line naming the extra
    check_outputs({"--onnx": args.onnx}, {"MODEL": args.model})
    model = load(args.model, backend="numpy")
    export.export_onnx(
        model.params,
        args.onnx,
        metadata=export.model_metadata(model),
        activation=model.activation,
    )
    print(
        f"ONNX graph written to {args.onnx}: input {export.INPUT} (N, {model.n_features}) "
        f"{model.dtype}, outputs {', '.join(export.OUTPUTS)}"
    )
    return 0


def _conformance(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("pytest") is None:
        raise ValueError("the conformance suite runs under pytest: pip install 'nnbin[test]'")
    name = args.backend.strip().lower()
    backend_class(name)  # an unknown name: one line naming the registered ones
    import pytest

    folder = _conformance_folder()
    os.environ[ENV_VAR] = name  # the suite tests this backend, and fails if it cannot run
    os.environ.pop("NNBIN_CONFORMANCE_BACKENDS", None)  # this backend alone, whatever the caller's
    # -rA: every check with its outcome, each skip with its reason; -p no:cacheprovider:
    # nothing written into the installed package
    return int(pytest.main([folder, "-rA", "-p", "no:cacheprovider", *args.pytest_args]))


def _conformance_folder() -> str:
    """The installed suite (``nnbin_conformance``), or ``conformance/`` of a source tree."""
    import importlib.util

    spec = importlib.util.find_spec("nnbin_conformance")
    if spec is not None and spec.origin:
        return os.path.dirname(spec.origin)
    here = os.path.dirname(os.path.abspath(__file__))
    folder = os.path.join(here, os.pardir, os.pardir, "conformance")
    if not os.path.isfile(os.path.join(folder, "conftest.py")):
        raise ValueError("the conformance suite is not installed: pip install 'nnbin[test]'")
    return os.path.normpath(folder)


def _plot(args: argparse.Namespace) -> int:
    from .data import load_data
    from .files import check_outputs
    from .modelfile import load
    from .plot import boundary_figure

    if args.label is not None and not args.data:
        raise ValueError("--label names a column of --data: give --data FILE as well")
    if not _can_plot():
        raise ValueError("plot needs matplotlib and seaborn: pip install 'nnbin[plot]'")
    check_outputs({"--out": args.out}, {"--model": args.model, "--data": args.data})
    be = get_backend(args.backend)
    be.enable_dtype("float64")  # a float64 model must load as float64 (JAX: 64-bit mode)
    model = load(args.model, backend=be.name)
    if args.data:
        X, y, _ = load_data(args.data, args.label, require_labels=False)
    else:
        import numpy as np

        if model.n_features == 2:
            raise ValueError("a two-feature heat map needs --data to set its extent")
        X, y = np.zeros((0, model.n_features)), None
    loss = "" if model.final_loss is None else f", final loss {model.final_loss:.3g}"
    cross = boundary_figure(
        model.params,
        X,
        y,
        args.out,
        backend=be,
        history=model.history or None,
        title=f"nnbin model {os.path.basename(args.model)}: "
        f"{model.n_features} feature(s), {_widths_text(model.hidden)} hidden "
        f"({model.activation}){loss}",
        activation=model.activation,
    )
    if model.n_features == 1:
        print(
            f"decision boundary (p = 0.5) at x = "
            f"{', '.join(f'{c:.3f}' for c in cross) or 'none in [-10, 10]'}"
        )
    print(f"figure written to {args.out}")
    return 0


def _whole(text: str) -> int:
    """A whole number, also written as 2e6; never 2.7 or inf."""
    value = float(text)
    if not (value == value and abs(value) != float("inf") and value == int(value)):
        raise ValueError(text)
    return int(value)


def _csv(text: str, what: str, parse: type = str) -> list:
    try:
        items = [_whole(v) if parse is int else parse(v) for v in text.split(",") if v.strip()]
    except ValueError:
        kind = "whole numbers" if parse is int else "names"
        raise ValueError(f"--{what}: expected comma-separated {kind}, got {text!r}") from None
    if not items:
        raise ValueError(f"--{what} is empty")
    return items


def _bench(args: argparse.Namespace) -> int:
    from . import bench

    backends = _csv(args.backends, "backends") if args.backends else bench.runnable_backends()
    for name in backends:
        get_backend(name)  # one clear error for a name that cannot run
    if args.dtypes and any(d not in ("float32", "float64") for d in _csv(args.dtypes, "dtypes")):
        raise ValueError(f"--dtypes: choose from float32, float64; got {args.dtypes!r}")
    baselines = [] if args.baselines == "none" else _csv(args.baselines, "baselines")
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(
            f"--baselines: unknown {', '.join(unknown)}; choose from {', '.join(BASELINES)} or none"
        )
    dtypes = _csv(args.dtypes, "dtypes")
    for name in backends:  # the benchmark owns its process (JAX: 64-bit mode for float64)
        for dtype in dtypes:
            get_backend(name).enable_dtype(dtype)
    if "jax-grad" in baselines and "float64" in dtypes and is_installed("jax"):
        get_backend("jax").enable_dtype("float64")
    sizes = _csv(args.sizes, "sizes", int)
    if any(n < 2 for n in sizes):
        raise ValueError("--sizes: every N must be >= 2")
    json_path = args.json
    from .files import check_outputs

    check_outputs({"--json": json_path, "--plot": args.plot}, {})
    report = bench.run_bench(
        backends,
        sizes,
        dtypes,
        args.steps,
        args.repeats,
        baselines,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        # rewritten after every cell: a run cut short keeps what it measured
        on_cell=(lambda r: bench.write_json(r, json_path)) if json_path else None,
    )
    print(bench.table(report, markdown=args.markdown))
    if json_path:
        bench.write_json(report, json_path)
        print(f"raw timings written to {json_path}")
    if args.plot:
        bench.plot(report, args.plot)
        print(f"figure written to {args.plot}")
    return 0


def _backends(args: argparse.Namespace) -> int:
    selected = os.environ.get(ENV_VAR, "").strip().lower() or "numpy"  # as get_backend reads it
    rows = [("backend", "status", "version", "devices", "default dtype", "loop")]
    for name in available_names():
        cls = backend_class(name)
        status, version, devices, loop = "not installed", "-", "-", cls.loop
        if is_installed(name):
            try:
                be = get_backend(name)
                status, version, devices = "ok", be.version(), ", ".join(be.devices())
                if be.has_fused and "fused" not in loop:  # torch, jax with CUDA and cupy
                    loop += "; the fused CUDA step (cupy's, through DLPack) where it applies"
            except NnbinError as exc:
                status = f"unavailable: {exc}"
        else:
            status = f"not installed: pip install 'nnbin[{cls.extra}]'"
        mark = "*" if name == selected else " "
        rows.append((f"{mark}{name}", status, version, devices, cls.default_dtype, loop))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"* selected now by {ENV_VAR}={os.environ.get(ENV_VAR, '') or '(unset: numpy)'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "conformance":
        args.pytest_args = extra  # everything else goes to pytest
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    terminated: list[int] = []

    def stop(signum: int, frame: object) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    try:  # the command line owns its process (not so in a thread: then left alone)
        previous: Any = signal.signal(signal.SIGTERM, stop)
    except ValueError:
        previous = None
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "plot":
            return _plot(args)
        if args.command == "export":
            return _export(args)
        if args.command == "conformance":
            return _conformance(args)
        if args.command == "quality":
            return _quality(args)
        return _backends(args)
    except (NnbinError, ValueError, FloatingPointError, OSError) as exc:
        if args.debug:
            raise
        print(f"nnbin: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # SIGINT (Ctrl-C) or SIGTERM: outputs not yet written stay unwritten, a file being
        # written is removed (nnbin.files); the exit status is the shell's 128 + signal
        print("nnbin: interrupted", file=sys.stderr)
        return 128 + (terminated[0] if terminated else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _quality(args: argparse.Namespace) -> int:
    from . import quality

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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return text


if __name__ == "__main__":
    sys.exit(main())
