"""Where the fused CUDA step's time goes: ``python3 -m nnbin_backends.cuda.profile [JSON]``.

For the seed network (D = 1, H = 32, float32) at N = 2e4, 2e6 and 2e7 it times each of the
two kernels with CUDA events (``reps`` launches back to back on one stream), reports the
registers, local memory and blocks an SM holds for each compile variant, and so separates
kernel time from launch gaps (compare with ``nnbin bench``'s µs/step). Variants tried:
the default build, ``--use_fast_math``, ``__launch_bounds__(BLOCK, 2)`` (≤ 128 registers, two
blocks an SM), both; and, per variant, the default grid (one wave) against one sample a
thread (more blocks, shorter per-thread chains). Needs cupy and a CUDA GPU; writes nothing
but the JSON asked for.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np

from nnbin.backend import get_backend

from . import kernels as cuda_fused

VARIANTS = {  # name -> (extra nvcc options, launch-bounds minimum blocks per SM or None)
    "default": ((), None),
    "fast-math": (("--use_fast_math",), None),
    "2-blocks/SM": ((), 2),
    "fast-math, 2-blocks/SM": (("--use_fast_math",), 2),
}


def _event_time(cp: Any, launch: Any, reps: int) -> float:
    """Seconds per launch of ``launch()``, by CUDA events around ``reps`` launches."""
    launch()  # warm-up
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(reps):
        launch()
    end.record()
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) / 1e3 / reps


def profile(
    sizes: tuple[int, ...] = (20_000, 2_000_000, 20_000_000),
    hidden: int = 32,
    dtype: str = "float32",
) -> list[dict[str, Any]]:
    be: Any = get_backend("cupy").runners.fused  # a CupyFused: its kernels' helpers are used
    cp = be._cupy
    attrs = cp.cuda.Device().attributes
    rng = np.random.default_rng(0)
    d, block = 1, be.block
    P = cuda_fused.n_partials(d, hidden)
    src_params = [
        cp.asarray(rng.standard_normal(s), dtype=dtype)
        for s in ((d, hidden), (hidden,), (hidden, 1), (1,))
    ]
    dst_params = [cp.empty_like(p) for p in src_params]
    rows = []
    for name, (options, min_blocks) in VARIANTS.items():
        source = cuda_fused.kernel_source(d, hidden, dtype, block=block)
        if min_blocks:
            source = source.replace(
                "__launch_bounds__(BLOCK_)", f"__launch_bounds__(BLOCK_, {min_blocks})"
            )
        module = cp.RawModule(code=source, options=("--std=c++14", *options))
        partials, update = (module.get_function(f"nnbin_{k}") for k in ("partials", "update"))
        max_blocks = be._max_blocks(partials)
        info = {
            "variant": name,
            "regs": int(partials.num_regs),
            "local_bytes": int(partials.local_size_bytes),
            "blocks_per_sm": max_blocks // int(attrs["MultiProcessorCount"]),
        }
        for n in sizes:
            X = cp.asarray(rng.standard_normal((n, d)), dtype=dtype)
            y = cp.asarray(rng.integers(0, 2, n), dtype=dtype)
            grids = {
                "one wave": cuda_fused.partials_blocks(n, max_blocks, block),
                "1 sample/thread": min(math.ceil(n / block), 8 * max_blocks),
            }
            for grid_name, blocks in grids.items():
                partial = cp.empty((P, blocks), dtype=dtype)
                grad, loss = cp.empty((P - 1,), dtype=dtype), cp.empty((1,), dtype=dtype)
                n64, b64, lr = np.int64(n), np.int64(blocks), np.float32(1.0)

                p_args = (X, y, *src_params, n64, np.int32(0), partial)
                u_args = (partial, b64, n64, lr, *src_params, *dst_params, grad, loss)

                def run_partials(k=partials, g=blocks, a=p_args) -> None:
                    k((g,), (block,), a)

                def run_update(k=update, a=u_args) -> None:
                    k((P,), (block,), a)

                def run_step(a=run_partials, b=run_update) -> None:
                    a()
                    b()

                reps = 200 if n <= 2_000_000 else 30
                t_p = _event_time(cp, run_partials, reps)
                t_u = _event_time(cp, run_update, reps)
                t_s = _event_time(cp, run_step, reps)
                row = {
                    **info,
                    "N": n,
                    "grid": grid_name,
                    "blocks": blocks,
                    "partials_us": t_p * 1e6,
                    "update_us": t_u * 1e6,
                    "step_us": t_s * 1e6,
                    "gap_us": (t_s - t_p - t_u) * 1e6,
                }
                rows.append(row)
                print(
                    f"{name:24s} regs {row['regs']:3d} local {row['local_bytes']:4d} "
                    f"blk/SM {row['blocks_per_sm']} N={n:<9d} {grid_name:15s} "
                    f"blocks {blocks:6d}  partials {row['partials_us']:9.1f} µs  "
                    f"update {row['update_us']:6.1f} µs  step {row['step_us']:9.1f} µs",
                    flush=True,
                )
            del X, y
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rows = profile()
    if argv:
        with open(argv[0], "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
