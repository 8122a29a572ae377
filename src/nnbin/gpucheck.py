"""The one GPU check: ``python3 -m nnbin.gpucheck OUT`` (or ``nox -s gpu -- OUT``).

Made for a GPU machine with no network: it installs nothing and runs from a source tree
(``PYTHONPATH=src``) or an install. For every GPU-capable backend it finds (cupy; jax with a
GPU device; torch with CUDA) it runs the conformance suite, trains the seed job on the GPU,
then runs the benchmark at N = 2e4, 2e6 and 2e7 beside the baselines, and writes
``OUT/report.md`` with every command's output, plus ``OUT/bench.json`` and figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .backend import get_backend


def gpu_backends() -> list[str]:
    """Backends with a GPU here; a backend whose package is missing is passed over."""
    from .backend import is_installed
    from .errors import NnbinError

    found = []
    for name in ("cupy", "jax", "torch"):
        if not is_installed(name):
            continue
        try:
            if get_backend(name).gpu_devices():
                found.append(name)
        except NnbinError:  # cupy without a CUDA device, for one
            pass
    return found


def _run(cmd: list[str], env: dict[str, str], log: list[str], timeout: float) -> int:
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        code, text = out.returncode, out.stdout + out.stderr
    except OSError as exc:  # the program is not there (nvidia-smi without a driver)
        code, text = 127, str(exc)
    except subprocess.TimeoutExpired as exc:
        code = 124
        parts = [p.decode() if isinstance(p, bytes) else p for p in (exc.stdout, exc.stderr)]
        text = "".join(p or "" for p in parts) + f"\n(timed out after {timeout:.0f} s)"
    log.append(f"## `{' '.join(cmd)}`\n\nexit {code}, {time.perf_counter() - t0:.1f} s\n\n"
               f"```\n{text[-20000:]}\n```\n")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python3 -m nnbin.gpucheck OUT_FOLDER", file=sys.stderr)
        return 2
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # several libraries, one GPU
    env.pop("CUPY_TF32", None)  # TF32 stays off for CuPy's float32 matmuls
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (os.path.join(os.getcwd(), "src"), os.getcwd(), env.get("PYTHONPATH"))
         if p])
    py = sys.executable
    found = gpu_backends()
    log = [f"# nnbin GPU check, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n",
           f"GPU-capable backends found: {', '.join(found) or 'none'}\n"]
    _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
          "--format=csv"], env, log, 60)
    status = 0
    for name in found:
        env_b = {**env, "NNBIN_BACKEND": name}
        status |= _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "conformance"],
                       env_b, log, 900) != 0
        status |= _run([py, "-m", "nnbin", "train", "--backend", name, "--plot",
                        os.path.join(out, f"boundary-{name}.png")], env, log, 600) != 0
    if found:
        status |= _run([py, "-m", "nnbin", "bench", "--backends", ",".join(["numpy", *found]),
                        "--sizes", "20000,2000000,20000000", "--markdown",
                        "--json", os.path.join(out, "bench.json"),
                        "--plot", os.path.join(out, "bench.png")], env, log, 1800) != 0
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(log))
    print(f"report written to {os.path.join(out, 'report.md')}; "
          f"{'all passed' if status == 0 else 'SOMETHING FAILED'}")
    return 1 if status or not found else 0


if __name__ == "__main__":
    sys.exit(main())
