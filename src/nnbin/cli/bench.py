"""``nnbin bench``: every backend beside baselines, in one run, as ratios."""

from __future__ import annotations

import argparse
import sys

from .. import options
from ..backend import get_backend, is_installed
from ..bench import BASELINES
from .common import csv_list, whole_number_type

HELP = "measure every backend beside baselines, in one run"


DESCRIPTION = (
    "Sample-steps per second (N x steps / seconds) of each backend, size and "
    "dtype, median of REPEATS timed runs after a warm-up, the device synchronised before "
    "the clock is read; compile/first-call time and peak memory (in (N, H) arrays) "
    "reported apart. Baselines measured in the same run: the seed-style NumPy loop "
    "(float64), jax.grad + fori_loop and PyTorch autograd where installed. Every nnbin "
    "figure is also a ratio to the seed loop and to the fastest baseline."
)


def flags(bench: argparse.ArgumentParser) -> None:
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
        type=whole_number_type(1, options.MAX_STEPS),
        default=None,
        help="steps per timing (default: about 2e7 / N, 2 to 1000)",
    )
    bench.add_argument("--repeats", type=whole_number_type(1), default=5, help="timed runs (5)")
    bench.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help=f"comma-separated, or 'none' ({','.join(BASELINES)})",
    )
    bench.add_argument("--json", metavar="FILE", help="write every raw timing and the machine")
    bench.add_argument("--plot", metavar="FILE", help="throughput against N, log-log")
    bench.add_argument("--markdown", action="store_true", help="print the table as Markdown")


def run(args: argparse.Namespace) -> int:
    from .. import bench
    from ..files import check_outputs

    backends = csv_list(args.backends, "backends") if args.backends else bench.runnable_backends()
    for name in backends:
        get_backend(name)  # one clear error for a name that cannot run
    dtypes = csv_list(args.dtypes, "dtypes")
    if any(d not in ("float32", "float64") for d in dtypes):
        raise ValueError(f"--dtypes: choose from float32, float64; got {args.dtypes!r}")
    baselines = [] if args.baselines == "none" else csv_list(args.baselines, "baselines")
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(
            f"--baselines: unknown {', '.join(unknown)}; choose from {', '.join(BASELINES)} or none"
        )
    for name in backends:  # the benchmark owns its process (JAX: 64-bit mode for float64)
        for dtype in dtypes:
            get_backend(name).tools.enable_dtype(dtype)
    if "jax-grad" in baselines and "float64" in dtypes and is_installed("jax"):
        get_backend("jax").tools.enable_dtype("float64")
    sizes = csv_list(args.sizes, "sizes", int)
    if any(n < 2 for n in sizes):
        raise ValueError("--sizes: every N must be >= 2")
    json_path = args.json
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
