"""What the commands share: the parser that reports bad usage in one line, the flags of a
saved model and of a data file, the one-line form of an error, and small parsers of
comma-separated flags."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from typing import Any, NoReturn

from .. import options
from ..errors import InvalidInputError


class Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: the data files every command reads
DATA_FORMATS = "CSV with a header, .npy or .npz"


def model_flags(p: argparse.ArgumentParser, use: str) -> None:
    """``--model MODEL`` and ``--backend NAME``: a saved model and the backend it is loaded
    onto to ``use`` it (:func:`load_model`)."""
    p.add_argument("--model", required=True, help="a model file saved by nnbin train --save")
    p.add_argument("--backend", help=f"backend to {use} on (default: $NNBIN_BACKEND, numpy)")


def data_flags(
    p: argparse.ArgumentParser, help: str, label: str, *, required: bool = False
) -> None:
    """``--data FILE`` and ``--label NAME`` (the label column of a CSV file)."""
    p.add_argument("--data", metavar="FILE", required=required, help=help)
    p.add_argument("--label", metavar="NAME", help=f"the CSV label column {label}")


def load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """(backend, model) of :func:`model_flags`' ``--model`` on its ``--backend``."""
    from ..backend import get_backend
    from ..modelfile import load

    be = get_backend(args.backend)
    be.tools.enable_dtype("float64")  # a float64 model must load as float64 (JAX: 64-bit mode)
    return be, load(args.model, backend=be.name)


def whole_number_type(least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [least, most], checked by the rule the training
    options use (:class:`nnbin.options.Whole`), its message argparse's."""
    rule = options.Whole(least, most)

    def parse(text: str) -> int:
        try:
            value: int = rule.check("the value", rule.parse(text))
        except InvalidInputError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("the value ")) from None
        return value

    return parse


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return text


def can_plot() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("matplotlib", "seaborn"))


def architecture_text(hidden: int | tuple[int, ...], activation: str) -> str:
    """The hidden layers as a title says them: "32 hidden (sigmoid)", "64,32 hidden
    (relu)", or "no hidden layer" (logistic regression: the activation plays no part)."""
    if hidden == ():
        return "no hidden layer"
    widths = str(hidden) if isinstance(hidden, int) else ",".join(map(str, hidden))
    return f"{widths} hidden ({activation})"


def _whole(text: str) -> int:
    """A whole number, also written as 2e6; never 2.7 or inf."""
    value = float(text)
    if not (value == value and abs(value) != float("inf") and value == int(value)):
        raise ValueError(text)
    return int(value)


def csv_list(text: str, what: str, parse: type = str) -> list:
    """The items of a comma-separated flag (``--sizes 2e4,2e6``), none empty."""
    try:
        items = [_whole(v) if parse is int else parse(v) for v in text.split(",") if v.strip()]
    except ValueError:
        kind = "whole numbers" if parse is int else "names"
        raise ValueError(f"--{what}: expected comma-separated {kind}, got {text!r}") from None
    if not items:
        raise ValueError(f"--{what} is empty")
    return items
