"""``nnbin conformance``: the conformance suite that ships with nnbin, on one backend."""

from __future__ import annotations

import argparse
import importlib.util
import os

from ..backend import ENV_VAR, backend_class

HELP = "run the conformance suite on one backend (pytest underneath)"
#: the arguments it does not know go to pytest
PASSES_ON = True


DESCRIPTION = (
    "The conformance suite that ships with nnbin, on the backend named "
    "(built in, or registered by another package through the nnbin.backends entry "
    "point), against nnbin's independent NumPy reference. Further arguments go to "
    "pytest (for example -x, -k NAME, -q); the exit status is pytest's. The report "
    "lists every check with its outcome and every skip with its reason. "
    "Needs pip install 'nnbin[test]'."
)


def flags(cf: argparse.ArgumentParser) -> None:
    cf.add_argument("--backend", required=True, help="the backend's registered name")
    cf.epilog = "Any other arguments are passed to pytest: nnbin conformance --backend NAME -x -q"


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("pytest") is None:
        raise ValueError("the conformance suite runs under pytest: pip install 'nnbin[test]'")
    name = args.backend.strip().lower()
    backend_class(name)  # an unknown name: one line naming the registered ones
    import pytest

    folder = suite_folder()
    os.environ[ENV_VAR] = name  # the suite tests this backend, and fails if it cannot run
    os.environ.pop("NNBIN_CONFORMANCE_BACKENDS", None)  # this backend alone, whatever the caller's
    # -rA: every check with its outcome, each skip with its reason; -p no:cacheprovider:
    # nothing written into the installed package
    return int(pytest.main([folder, "-rA", "-p", "no:cacheprovider", *args.extra]))


def suite_folder() -> str:
    """The installed suite (``nnbin_conformance``), or ``conformance/`` of a source tree."""
    spec = importlib.util.find_spec("nnbin_conformance")
    if spec is not None and spec.origin:
        return os.path.dirname(spec.origin)
    here = os.path.dirname(os.path.abspath(__file__))
    folder = os.path.join(here, os.pardir, os.pardir, os.pardir, "conformance")
    if not os.path.isfile(os.path.join(folder, "conftest.py")):
        raise ValueError("the conformance suite is not installed: pip install 'nnbin[test]'")
    return os.path.normpath(folder)
