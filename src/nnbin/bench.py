"""``nnbin bench``: throughput of every backend beside baselines measured in the same run.

Unit: sample-steps per second, N x steps / seconds of training (data generation, imports
and compilation excluded; compile / first-call time reported on its own). Each cell is
timed ``repeats`` times after a warm-up, with the device synchronised before the clock is
read; the median and the spread (min-max) are reported. Every nnbin figure is also given
as a ratio to the seed-style NumPy loop and to the fastest baseline of the same size and
dtype, all measured in this run.

The baselines share no code with nnbin's core (the JAX and PyTorch ones are in
``backends/baselines.py``, the only place besides the backends that imports those libraries):
- ``seed-numpy``: the notebook's structure (``np.dot``, in-place updates, float64) with the
  correct gradient of the cross-entropy;
- ``jax-grad``: ``jax.grad`` of the loss, the whole loop in one ``jax.jit`` (``fori_loop``);
- ``torch-autograd``: PyTorch autograd, eager.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from .backend import available_names, backend_class, get_backend, init_params, is_installed
from .data import two_gaussians
from .errors import NnbinError
from .loop import run as run_loop
from .validate import available_memory

HIDDEN = 32
BASELINES = ("seed-numpy", "jax-grad", "torch-autograd")


@dataclass
class Cell:
    """One timed configuration."""

    name: str  # "nnbin:<backend>" or "baseline:<name>"
    n: int
    dtype: str
    steps: int
    seconds: list[float] = field(default_factory=list)  # each timed repeat
    first_call_seconds: float = 0.0  # warm-up run: compile + first execution
    peak_nh: float | None = None  # peak working memory in (N, H) arrays of this dtype
    loop: str = ""
    skipped: str = ""  # why it did not run

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def throughput(self) -> float:
        return self.n * self.steps / self.median if self.seconds else float("nan")

    @property
    def us_per_step(self) -> float:
        return 1e6 * self.median / self.steps if self.seconds else float("nan")


def default_steps(n: int) -> int:
    """About 2e7 sample-steps per timing (the seed job: 1,000 steps), at least 2."""
    return int(max(2, min(1000, 20_000_000 // n)))


def _nh_bytes(n: int, dtype: str) -> int:
    return n * HIDDEN * np.dtype(dtype).itemsize


# --- nnbin's backends ---------------------------------------------------------------


def _time_backend(
    name: str, n: int, dtype: str, steps: int, repeats: int, fused: bool | None = None
) -> Cell:
    """One cell; ``fused=False`` times the array-API core of a backend with a fused step."""
    cell = Cell(f"nnbin:{name}" + ("-core" if fused is False else ""), n, dtype, steps)
    be = get_backend(name)
    cell.loop = be.about.loop
    kw: dict[str, Any] = {"fused": fused}
    if dtype not in be.dtypes:
        cell.skipped = f"no {dtype}"
        return cell
    # The data, and the backend's working memory in (N, H) arrays; skip what cannot fit.
    need = (be.about.memory_nh + 1) * _nh_bytes(n, dtype) + 2 * n * np.dtype(dtype).itemsize
    if need > 0.8 * available_memory():
        cell.skipped = f"needs ~{need / 2**30:.1f} GiB, more than is free"
        return cell
    X, y = two_gaussians(n // 2, seed=0)
    Xd, yd = be.asarray(X, dtype), be.asarray(y, dtype)
    del X, y
    params = init_params(be, 1, HIDDEN, 0, dtype=dtype)
    t0 = time.perf_counter()
    run = run_loop(be, params, Xd, yd, lr=1.0, steps=steps, log_every=0, **kw)
    be.synchronize(run.params)
    cell.first_call_seconds = time.perf_counter() - t0
    cell.loop = run.loop or be.about.loop
    for _ in range(repeats):
        t0 = time.perf_counter()
        run = run_loop(be, params, Xd, yd, lr=1.0, steps=steps, log_every=0, **kw)
        be.synchronize(run.params)
        cell.seconds.append(time.perf_counter() - t0)
    cell.peak_nh = _peak_nh(be, params, Xd, yd, n, dtype, kw)
    return cell


def _peak_nh(
    be: Any, params: Any, X: Any, y: Any, n: int, dtype: str, kw: dict[str, Any]
) -> float | None:
    """Peak temporary memory of one step, in (N, H) arrays: NumPy-based backends through
    tracemalloc (NumPy reports its buffers to it), JAX from XLA's memory analysis, torch on
    CUDA from its allocator's peak, CuPy from its memory pool; None where not measurable
    (torch on the CPU, Dask)."""
    if be.about.memory_traced:  # NumPy-based, seen by tracemalloc
        import tracemalloc

        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run_loop(be, params, X, y, lr=1.0, steps=1, log_every=0)
        traced = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        return traced / _nh_bytes(n, dtype)
    # GPU allocators: their peak over one step
    one = partial(run_loop, be, params, X, y, lr=1.0, steps=1, log_every=0, **kw)
    peak = be.tools.step_peak_bytes(one)
    if peak is not None:
        return peak / _nh_bytes(n, dtype)
    temp = be.tools.last_temp_bytes
    return None if temp is None else temp / _nh_bytes(n, dtype)


# --- baselines: independent of nnbin's core -------------------------------------------


def _seed_numpy(n: int, dtype: str, steps: int, hidden: int) -> Callable[[], None]:
    X, y = two_gaussians(n // 2, seed=0)
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((1, hidden)), rng.standard_normal((hidden, 1))
    b1, b2 = np.zeros(hidden), np.zeros(1)

    def run() -> None:
        w1, bb1, w2, bb2 = W1.copy(), b1.copy(), W2.copy(), b2.copy()
        with np.errstate(over="ignore"):
            for _ in range(steps):
                h = 1 / (1 + np.exp(-(np.dot(X, w1) + bb1)))
                y_hat = 1 / (1 + np.exp(-(np.dot(h, w2) + bb2)))
                dz = (y_hat - y) / n
                dh = np.dot(dz, w2.T) * h * (1 - h)
                w2 -= np.dot(h.T, dz)
                bb2 -= dz.sum(axis=0)
                w1 -= np.dot(X.T, dh)
                bb1 -= dh.sum(axis=0)

    return run


def _baseline_maker(name: str) -> Callable[[int, str, int, int], Callable[[], None]]:
    if name == "seed-numpy":
        return _seed_numpy
    # The JAX and PyTorch baselines import their libraries, so they live in backends/ (the
    # only place that may); like this one, they share no code with nnbin's core.
    from nnbin_backends import baselines

    maker: Callable[[int, str, int, int], Callable[[], None]] = getattr(
        baselines, name.replace("-", "_")
    )
    return maker


_BASELINE_PACKAGES = {"seed-numpy": "numpy", "jax-grad": "jax", "torch-autograd": "torch"}


def _time_baseline(name: str, n: int, dtype: str, steps: int, repeats: int) -> Cell:
    package = _BASELINE_PACKAGES[name]
    cell = Cell(f"baseline:{name}", n, dtype, steps, loop="baseline")
    if name == "seed-numpy" and dtype != "float64":
        cell.skipped = "the seed loop is float64"
        return cell
    import importlib.util

    if importlib.util.find_spec(package) is None:
        cell.skipped = f"{package} not installed"
        return cell
    if 6 * _nh_bytes(n, dtype) > 0.8 * available_memory():
        cell.skipped = "does not fit in free memory"
        return cell
    try:
        run = _baseline_maker(name)(n, dtype, steps, HIDDEN)
    except NnbinError as exc:
        cell.skipped = str(exc)
        return cell
    t0 = time.perf_counter()
    run()
    cell.first_call_seconds = time.perf_counter() - t0
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        cell.seconds.append(time.perf_counter() - t0)
    return cell


# --- the run and its report --------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        info["blas"] = "unknown"
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):  # the GPU's name without importing a GPU library
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            info["gpu"] = "; ".join(out.stdout.strip().splitlines()) or "none"
    from importlib.metadata import PackageNotFoundError, version

    for dist in (
        "jax",
        "jaxlib",
        "torch",
        "array-api-strict",
        "array-api-compat",
        "cupy-cuda12x",
        "cupy-cuda13x",
        "dask",
    ):
        with contextlib.suppress(PackageNotFoundError):  # metadata only: nothing imported
            info[dist] = version(dist)
    return info


def _loaded_backends(names: Sequence[str]) -> list[Any]:
    """The backends among ``names`` that are already loaded (nothing is imported here)."""
    from .backend import _cache

    return [_cache[n] for n in names if n in _cache]


def _out_of_memory(exc: BaseException, libraries: list[Any]) -> bool:
    """Whether ``exc`` is a failed allocation, as any loaded library reports one (the
    backends' ``out_of_memory`` hook: CuPy's OutOfMemoryError, PyTorch's, XLA's
    RESOURCE_EXHAUSTED)."""
    if isinstance(exc, MemoryError):
        return True
    return any(be.tools.out_of_memory(exc) for be in libraries)


def _release_memory(libraries: list[Any]) -> None:
    """Free each library's cached device memory between cells (the
    ``release_memory`` hook), so one cell's pool does not starve the next."""
    import gc

    gc.collect()
    for be in libraries:
        with contextlib.suppress(Exception):
            be.tools.release_memory()


def _guarded(
    make: Callable[[], Cell],
    name: str,
    n: int,
    dtype: str,
    steps: int,
    need_nh: float,
    libraries: Callable[[], list[Any]],
) -> Cell:
    """One cell; a device out-of-memory error of any library becomes a skipped cell that
    says how much memory the cell asked for, and nnbin's own errors a skipped cell too."""
    oom = ""
    try:
        return make()
    except NnbinError as exc:
        return Cell(name, n, dtype, steps, skipped=str(exc))
    except Exception as exc:
        if not _out_of_memory(exc, libraries()):
            raise
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        oom = (
            f"out of device memory (~{need_nh * _nh_bytes(n, dtype) / 2**30:.1f} GiB "
            f"asked for: data and {need_nh - 1:g} (N, H) arrays): "
            f"{type(exc).__name__}: {first}"
        )
    finally:
        _release_memory(libraries())
    return Cell(name, n, dtype, steps, skipped=oom)


def run_bench(
    backends: Sequence[str],
    sizes: Sequence[int],
    dtypes: Sequence[str],
    steps: int | None,
    repeats: int,
    baselines: Sequence[str],
    progress: Callable[[str], None] | None = None,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Time every cell. ``on_cell(report)`` gets the report so far after each cell (the
    command line rewrites its JSON then, so a run cut short keeps what it measured)."""
    cells: list[Cell] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    info = machine()
    everything = [*backends, *(_BASELINE_PACKAGES[b] for b in baselines)]

    def report() -> dict[str, Any]:
        return {
            "date": started,
            "machine": info,
            "repeats": repeats,
            "cells": [asdict(c) | _derived(c, cells) for c in cells],
        }

    def add(cell: Cell) -> None:
        cells.append(cell)
        if progress:
            progress(_line(cell))
        if on_cell:
            on_cell(report())

    def loaded() -> list[Any]:
        return _loaded_backends(everything)

    for name in baselines:  # their libraries' hooks recognise their out-of-memory errors
        package = _BASELINE_PACKAGES[name]
        if package != "numpy" and is_installed(package):
            with contextlib.suppress(NnbinError):
                get_backend(package)

    for n in sizes:
        s = steps or default_steps(n)
        for dtype in dtypes:
            for name in baselines:
                add(
                    _guarded(
                        partial(_time_baseline, name, n, dtype, s, repeats),
                        f"baseline:{name}",
                        n,
                        dtype,
                        s,
                        7.0,
                        loaded,
                    )
                )
            for name in backends:
                try:  # a fused step depends on the machine (torch, jax: CUDA and cupy)
                    be = get_backend(name)
                    fusable, need = be.runners.fused is not None, be.about.memory_nh + 1
                except NnbinError:
                    fusable, need = False, 5.0
                paths: list[bool | None] = [None, False] if fusable else [None]
                for fused in paths:
                    label = f"nnbin:{name}" + ("-core" if fused is False else "")
                    add(
                        _guarded(
                            partial(_time_backend, name, n, dtype, s, repeats, fused),
                            label,
                            n,
                            dtype,
                            s,
                            need,
                            loaded,
                        )
                    )
    return report()


def _derived(c: Cell, cells: list[Cell]) -> dict[str, Any]:
    """Throughput and the ratios against the seed loop and the fastest baseline."""
    out: dict[str, Any] = {
        "median_seconds": c.median,
        "throughput": c.throughput,
        "us_per_step": c.us_per_step,
    }
    same = [o for o in cells if o.n == c.n and o.seconds and o.name.startswith("baseline:")]
    seed = [o for o in same if o.name == "baseline:seed-numpy"]
    out["vs_seed_numpy"] = c.throughput / seed[0].throughput if seed and c.seconds else None
    peers = [o for o in same if o.dtype == c.dtype]
    best = max(peers, key=lambda o: o.throughput, default=None)
    out["fastest_baseline"] = best.name if best else None
    out["vs_fastest_baseline"] = c.throughput / best.throughput if best and c.seconds else None
    return out


def _line(c: Cell) -> str:
    if c.skipped:
        return f"{c.name:26s} N={c.n:<9d} {c.dtype:8s} skipped: {c.skipped}"
    return (
        f"{c.name:26s} N={c.n:<9d} {c.dtype:8s} {c.throughput:11.4g} sample-steps/s  "
        f"{c.us_per_step:10.1f} us/step"
    )


def table(report: dict[str, Any], markdown: bool = False) -> str:
    head = [
        "variant",
        "N",
        "dtype",
        "steps",
        "median s",
        "spread s",
        "sample-steps/s",
        "µs/step",
        "× seed loop",
        "× fastest baseline",
        "first call s",
        "peak (N,H)",
    ]
    rows = []
    for c in report["cells"]:
        if c["skipped"]:
            why = c["skipped"].split(":")[0][:40]
            rows.append(
                [
                    c["name"],
                    f"{c['n']:.0e}".replace("e+0", "e"),
                    c["dtype"],
                    str(c["steps"]),
                    "-",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    f"skipped: {why}",
                ]
            )
            continue
        secs = c["seconds"]

        def ratio(v: float | None) -> str:
            return "" if v is None else f"{v:.2f}"

        rows.append(
            [
                c["name"],
                f"{c['n']:.0e}".replace("e+0", "e"),
                c["dtype"],
                str(c["steps"]),
                f"{c['median_seconds']:.3f}",
                f"{min(secs):.3f}–{max(secs):.3f}",
                f"{c['throughput']:.3g}",
                f"{c['us_per_step']:.1f}",
                ratio(c["vs_seed_numpy"]),
                ratio(c["vs_fastest_baseline"]),
                f"{c['first_call_seconds']:.2f}",
                "" if c["peak_nh"] is None else f"{c['peak_nh']:.2f}",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *rows]
    )


def plot(report: dict[str, Any], path: str) -> None:
    """Throughput against N, log-log, one line per backend/baseline and dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import atomic_savefig

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for c in report["cells"]:
        if not c["skipped"]:
            series.setdefault((c["name"], c["dtype"]), []).append((c["n"], c["throughput"]))
    for (name, dtype), pts in sorted(series.items()):
        pts.sort()
        style = "--" if name.startswith("baseline:") else "-"
        ax.plot(*zip(*pts), style, marker="o", label=f"{name} {dtype}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (samples)")
    ax.set_ylabel("sample-steps per second")
    ax.set_title(f"nnbin bench, {report['machine'].get('cpu', '')}", fontsize=9)
    ax.legend(fontsize=7)
    atomic_savefig(fig, path)
    plt.close(fig)


def runnable_backends() -> list[str]:
    """Every backend that runs here and belongs in the default benchmark."""
    names = []
    for name in available_names():
        if is_installed(name) and backend_class(name).about.in_default_bench:
            try:
                get_backend(name)
                names.append(name)
            except NnbinError:
                pass
    return names


def write_json(report: dict[str, Any], path: str) -> None:
    from .files import atomic_write

    text = json.dumps(report, indent=1, default=float).encode()
    atomic_write(path, lambda fh: fh.write(text))
