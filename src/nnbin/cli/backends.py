"""``nnbin backends``: every registered backend, whether it runs here, and which is selected."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..backend import ENV_VAR, Runners, available_names, backend_class, get_backend, is_installed
from ..errors import NnbinError, UnknownBackendError

HELP = "list the registered backends"


DESCRIPTION = (
    "Every registered backend, whether it can run here, its "
    f"version and devices, and which one ${ENV_VAR} selects now. Importing a library can "
    "take seconds: a line on stderr names each installed backend as it is checked."
)


def flags(b: argparse.ArgumentParser) -> None:
    """No flags of its own."""


def run(args: argparse.Namespace) -> int:
    selected = os.environ.get(ENV_VAR, "").strip().lower() or "numpy"  # as get_backend reads it
    rows = [("backend", "status", "version", "devices", "default dtype", "loop")]
    names = available_names()
    for i, name in enumerate(names, 1):
        cls = backend_class(name)
        status, version, devices, loop = "not installed", "-", "-", cls.about.loop
        if is_installed(name):
            t0 = time.perf_counter()
            try:
                be = get_backend(name)
                status, version, devices = "ok", be.tools.version(), ", ".join(be.tools.devices())
                fused, graphs = be.runners.fused, type(be.runners).graphs
                if fused is not None and "fused" not in loop:  # torch, jax: CUDA and cupy
                    loop += "; the fused CUDA step (cupy's, through DLPack) where it applies"
                if graphs is not Runners.graphs and be.tools.gpu_devices():  # torch, cupy
                    loop += "; the core as CUDA graphs with --cuda-graphs (unverified on a GPU)"
            except NnbinError as exc:
                status = f"unavailable: {exc}"
            took = time.perf_counter() - t0
            print(
                f"checked {name} ({i}/{len(names)}): {status.partition(':')[0]}, {took:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        else:
            status = f"not installed: pip install 'nnbin[{cls.about.extra}]'"
        mark = "*" if name == selected else " "
        rows.append((f"{mark}{name}", status, version, devices, cls.default_dtype, loop))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"* selected now by {ENV_VAR}={os.environ.get(ENV_VAR, '') or '(unset: numpy)'}")
    if selected not in available_names():  # the table, then the one line that says why
        raise UnknownBackendError(
            f"{ENV_VAR}={os.environ.get(ENV_VAR, '').strip()!r} names no backend; choose one "
            f"of: {', '.join(available_names())}"
        )
    return 0
