"""The one GPU check: ``python3 -m nnbin.gpucheck OUT`` (or ``nox -s gpu -- OUT``).

Made for a GPU machine with no network and little time on it: it installs nothing, runs
from a source tree (``PYTHONPATH=src``) or an install, and fits a time budget (``--budget``
seconds, 480 by default, so one 10-minute device call holds it). For every GPU-capable
backend it finds (cupy; jax with a GPU device; torch with CUDA) it runs, most important
first and each under the time left: the conformance suite, the seed job trained on the GPU,
the benchmark at N = 2e4 (1,000 steps), 2e6 (200) and 2e7 (50) in float32 beside the JAX
and PyTorch baselines, then float64, the fused step without CUDA graphs, and with
``--use_fast_math`` (timed, and the float32 conformance cases run with it). What the budget
cuts is listed as not run. ``OUT/report.md`` (every command and its output) is rewritten
after each command, so a run that is killed still leaves what it did; ``OUT/bench-*.json``
hold the raw timings. ``--plan`` prints the commands and runs nothing. ``--only TEXT``
(repeatable) keeps the jobs whose title contains TEXT, besides "the GPU": the rerun of what
failed, for example ``--only "conformance, cupy" --only "2e7 float32"``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .backend import get_backend

DEFAULT_BUDGET = 480.0


@dataclass
class Job:
    title: str
    cmd: list[str]
    cap: float  # seconds it may take at most
    env: dict[str, str] = field(default_factory=dict)


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


def plan(found: list[str], out: str, py: str = sys.executable) -> list[Job]:
    """The commands, most important first."""
    jobs = [Job("the GPU", ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,"
                            "clocks.max.sm", "--format=csv"], 20)]
    if not found:
        return jobs
    pytest = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "conformance"]
    baselines = [b for b in ("jax-grad", "torch-autograd") if b.split("-")[0] in found]

    def bench(tag: str, size: int, steps: int, dtypes: str, repeats: int, cap: float,
              base: list[str], backends: list[str] = found, env: dict[str, str] | None = None
              ) -> Job:
        return Job(f"benchmark, {tag}", [
            py, "-m", "nnbin", "bench", "--backends", ",".join(backends), "--sizes", str(size),
            "--steps", str(steps), "--dtypes", dtypes, "--repeats", str(repeats),
            "--baselines", ",".join(base) or "none", "--markdown",
            "--json", os.path.join(out, f"bench-{tag.replace(' ', '-')}.json")], cap, env or {})

    def conformance(name: str) -> Job:
        return Job(f"conformance, {name}", pytest, 150, {"NNBIN_BACKEND": name})

    def seed_job(name: str) -> Job:
        figure = os.path.join(out, f"boundary-{name}.png")
        return Job(f"seed job on {name}", [py, "-m", "nnbin", "train", "--backend", name,
                                           "--plot", figure], 45)

    # what the issues ask of the first backend (cupy where present), and the speed figures
    jobs += [conformance(found[0]), seed_job(found[0]),
             bench("2e4 float32", 20_000, 1000, "float32", 5, 90, baselines),
             bench("2e6 float32", 2_000_000, 200, "float32", 3, 60, baselines),
             bench("2e7 float32", 20_000_000, 50, "float32", 3, 100, baselines)]
    # then the other GPU backends, float64, and what CUDA graphs are worth
    jobs += [conformance(name) for name in found[1:]]
    jobs += [seed_job(name) for name in found[1:]]
    jobs += [bench("2e4 float64", 20_000, 1000, "float64", 3, 90, ["seed-numpy", *baselines]),
             bench("2e6 float64", 2_000_000, 200, "float64", 3, 90, baselines)]
    if "cupy" in found:
        fast = {"NNBIN_CUDA_FAST_MATH": "1", "NNBIN_BACKEND": "cupy"}
        jobs += [bench("2e4 float32 no graphs", 20_000, 1000, "float32", 5, 60, [],
                       ["cupy"], {"NNBIN_CUDA_GRAPHS": "0"}),
                 # what --use_fast_math would give, and whether it still conforms
                 bench("2e7 float32 fast math", 20_000_000, 50, "float32", 3, 60, [],
                       ["cupy"], fast),
                 Job("conformance, cupy fast math", [*pytest, "-k", "float32"], 120, fast)]
    return jobs


def _run(job: Job, env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    try:
        out = subprocess.run(job.cmd, capture_output=True, text=True, env={**env, **job.env},
                             timeout=timeout)
        code, text = out.returncode, out.stdout + out.stderr
    except OSError as exc:  # the program is not there (nvidia-smi without a driver)
        code, text = 127, str(exc)
    except subprocess.TimeoutExpired as exc:
        code = 124
        parts = [p.decode() if isinstance(p, bytes) else p for p in (exc.stdout, exc.stderr)]
        text = "".join(p or "" for p in parts) + f"\n(stopped after {timeout:.0f} s)"
    return code, text, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m nnbin.gpucheck",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder for report.md, the JSON and the figures")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help=f"seconds for everything ({DEFAULT_BUDGET:.0f})")
    parser.add_argument("--plan", action="store_true", help="print the commands, run none")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only the jobs whose title contains TEXT (repeatable); "
                             "'the GPU' always runs")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # several libraries, one GPU
    env.pop("CUPY_TF32", None)  # TF32 stays off for CuPy's float32 matmuls
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (os.path.join(os.getcwd(), "src"), os.getcwd(), env.get("PYTHONPATH"))
         if p])
    found = gpu_backends()
    jobs = plan(found, args.out)
    if args.only:
        jobs = [j for j in jobs if j.title == "the GPU" or any(t in j.title for t in args.only)]
        if found and all(j.title == "the GPU" for j in jobs):
            parser.error(f"--only {args.only} matches no job; --plan lists their titles")
    if args.plan:
        for job in jobs:
            extra = " ".join(f"{k}={v}" for k, v in job.env.items())
            print(f"[{job.cap:4.0f} s] {job.title}: {extra} {' '.join(job.cmd)}".replace(
                ":  ", ": "))
        return 0
    os.makedirs(args.out, exist_ok=True)
    head = [f"# nnbin GPU check, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n",
            f"GPU-capable backends found: {', '.join(found) or 'none'}; budget "
            f"{args.budget:.0f} s; `{' '.join([sys.executable, '-m', 'nnbin.gpucheck'])}`\n"]
    sections: list[str] = []
    skipped: list[str] = []
    failed: list[str] = []

    def write() -> None:
        tail = [f"Failed: {', '.join(failed) or 'nothing'}.\n"]
        if skipped:
            tail.append(f"Not run (out of time): {', '.join(skipped)}.\n")
        with open(os.path.join(args.out, "report.md"), "w") as fh:
            fh.write("\n".join(head + tail + sections))

    for job in jobs:
        left = args.budget - (time.perf_counter() - start)
        if left < min(job.cap, 20):
            skipped.append(job.title)
            continue
        code, text, took = _run(job, env, min(job.cap, left))
        if code != 0 and job.title != "the GPU":
            failed.append(job.title)
        extra = " ".join(f"{k}={v}" for k, v in job.env.items())
        sections.append(f"## {job.title}\n\n`{extra + ' ' if extra else ''}"
                        f"{' '.join(job.cmd)}`: exit {code}, {took:.1f} s\n\n"
                        f"```\n{text[-20000:]}\n```\n")
        print(f"{job.title}: exit {code}, {took:.1f} s", flush=True)
        write()
    write()
    print(f"report written to {os.path.join(args.out, 'report.md')}; "
          f"{'SOMETHING FAILED' if failed else 'nothing failed'}"
          f"{'; not run: ' + ', '.join(skipped) if skipped else ''}")
    return 1 if failed or not found else 0


if __name__ == "__main__":
    sys.exit(main())
