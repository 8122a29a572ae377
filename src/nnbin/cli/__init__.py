"""The ``nnbin`` command line: one module per command, each with its ``HELP`` and
``DESCRIPTION``, ``flags(parser)`` and ``run(args)`` (the exit status), dispatched by
:data:`COMMANDS`. The
training flags are derived from the options table (:mod:`nnbin.options`).

Every error nnbin raises on purpose, and every OSError, is one line on stderr and exit
status 2 (``--debug`` shows the traceback); SIGINT and SIGTERM exit with 128 + the signal,
leaving no half-written output behind (:mod:`nnbin.files`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .._version import __version__
from ..backend import ENV_VAR
from ..errors import NnbinError
from . import backends, bench, conformance, export, plot, predict, quality, train
from .common import Parser, one_line

#: the commands, in the order ``nnbin --help`` lists them
COMMANDS: dict[str, ModuleType] = {
    "train": train,
    "predict": predict,
    "export": export,
    "conformance": conformance,
    "plot": plot,
    "bench": bench,
    "quality": quality,
    "backends": backends,
}


def build_parser() -> argparse.ArgumentParser:
    # no abbreviated flags: --fast would silently become --fast-math (and another flag added
    # later could change what an abbreviation means)
    parser = Parser(
        prog="nnbin",
        allow_abbrev=False,
        description="A small neural-network binary classifier, written once against the "
        "Python array API, with a hand-written backward pass. "
        f"Each command's backend comes from its --backend, else ${ENV_VAR}, else numpy.",
    )
    parser.add_argument("--version", action="version", version=f"nnbin {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.flags(
            sub.add_parser(
                name, help=module.HELP, description=module.DESCRIPTION, allow_abbrev=False
            )
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    if getattr(command, "PASSES_ON", False):
        args.extra = extra  # everything else goes on (conformance: to pytest)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    terminated: list[int] = []

    def stop(signum: int, frame: object) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    try:  # the command line owns its process (not so in a thread: then left alone)
        previous: Any = signal.signal(signal.SIGTERM, stop)
    except ValueError:
        previous = None
    try:
        status: int = command.run(args)
        return status
    except (NnbinError, ValueError, FloatingPointError, OSError) as exc:
        if args.debug:
            raise
        print(f"nnbin: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # SIGINT (Ctrl-C) or SIGTERM: outputs not yet written stay unwritten, a file being
        # written is removed (nnbin.files); the exit status is the shell's 128 + signal
        print("nnbin: interrupted", file=sys.stderr)
        return 128 + (terminated[0] if terminated else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
