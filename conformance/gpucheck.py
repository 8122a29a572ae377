"""The one GPU check: ``python3 -m conformance.gpucheck OUT`` (or ``nox -s gpu -- OUT``).

Made for a GPU machine with no network and little time on it: it installs nothing, runs
from a source tree (``PYTHONPATH=src``, ``python3 -m conformance.gpucheck``) or an install
(``python3 -m nnbin_conformance.gpucheck``), and fits a time budget (``--budget``
seconds, 480 by default, so one 10-minute device call holds it). The jobs' caps (the most
each may take, from the first H100 run with a margin) add up to at most the budget, and a
job starts only when its whole cap still fits, so a run cut short lists what it did not
start instead of killing a job half-way. Most important first, so the report is useful
wherever it stops:

1. the GPU (``nvidia-smi``);
2. correctness, all at once (processes in parallel; nothing is timed while they run): the
   conformance suite on every GPU-capable backend found (cupy; jax with a GPU; torch with
   CUDA), each split into shards run at once (``NNBIN_CONFORMANCE_SHARD=K/N``), the
   float32 cases again with ``--use_fast_math``, and the seed job on each;
3. the benchmark in float32 at N = 2e4 (1,000 steps), 2e6 (200) and 2e7 (50) beside
   ``jax.grad`` + ``fori_loop`` and PyTorch autograd, alone on the GPU;
4. the fused step's profile (CUDA events around each kernel, registers, compile variants:
   ``backends/cuda/profile.py``);
5. what the budget leaves: float64, the fused step without CUDA graphs.

The parent process never imports a GPU library: the GPUs are found by a child process,
and the allocator settings (JAX preallocation off, TF32 off for CuPy) are in the
environment before any child starts. A job whose Python package is missing is reported as
not run, with the package named. ``OUT/report.md`` (every command and its output) is
rewritten after each job, so a run that is killed still leaves what it did;
``OUT/bench-*.json`` and ``OUT/profile.json`` hold the raw timings. ``--plan`` prints the
jobs and their caps and runs nothing; ``--only TEXT`` (repeatable) keeps the jobs whose
title contains TEXT, besides "the GPU": the rerun of what failed, for example
``--only "conformance, jax" --only "2e7 float32"``.

Exit status: 0 when every job that ran passed; 1 when a job failed or the budget cut one;
3 (``NO_GPU``) when no GPU-capable backend was found, so nothing was checked (one line
says so; ``nox -s gpu`` accepts it, so a CPU machine's ``nox -s gpu`` is not a failure).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

DEFAULT_BUDGET = 480.0
NO_GPU = 3  # exit status: no GPU-capable backend here, nothing was checked
GPU_BACKENDS = ("cupy", "jax", "torch")
# Set before any child starts, so that no process of the check reserves the GPU for itself
# (JAX takes 75% of it by default) and CuPy's float32 matmuls stay exact.
GPU_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
GPU_ENV_REMOVED = ("CUPY_TF32",)
#: processes each backend's conformance suite is split into (16 CPU cores on the machine)
CONFORMANCE_SHARDS = {"cupy": 3, "jax": 4, "torch": 2}


@dataclass
class Job:
    title: str
    cmd: list[str]
    cap: float  # seconds it may take at most
    env: dict[str, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # Python packages the job imports (checked before it starts)
    expect: float | None = None  # seconds it took on the last H100 run (None: not run yet)


@dataclass
class Group:
    """Jobs run at the same time: correctness checks only (timings run alone)."""

    title: str
    jobs: list[Job]

    @property
    def cap(self) -> float:
        return max(j.cap for j in self.jobs)


Step = Job | Group


def child_env(env: dict[str, str] | None = None, cwd: str | None = None) -> dict[str, str]:
    """The environment every child of the check gets: GPU settings, and the source tree on
    the import path (``src`` for nnbin, the root for ``backends/``)."""
    env = dict(os.environ if env is None else env)
    env.update(GPU_ENV)
    for name in GPU_ENV_REMOVED:
        env.pop(name, None)
    cwd = cwd or os.getcwd()
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (os.path.join(cwd, "src"), cwd, env.get("PYTHONPATH")) if p]
    )
    return env


_DISCOVER = """
import json
from nnbin.backend import get_backend, is_installed
from nnbin.errors import NnbinError
found = []
for name in {names!r}:
    try:
        if is_installed(name) and get_backend(name).tools.gpu_devices():
            found.append(name)
    except NnbinError:  # cupy without a CUDA device, for one
        pass
print(json.dumps(found))
"""


def gpu_backends(py: str = sys.executable, timeout: float = 120.0) -> list[str]:
    """Backends with a GPU here, found by a child process (so this one never initialises a
    GPU library); a backend whose package is missing is passed over."""
    try:
        out = subprocess.run(
            [py, "-c", _DISCOVER.format(names=GPU_BACKENDS)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = out.stdout.strip().splitlines()
    try:
        found = json.loads(lines[-1]) if out.returncode == 0 and lines else []
    except json.JSONDecodeError:
        return []
    return [name for name in found if name in GPU_BACKENDS]


def shards(n: int) -> list[str]:
    """The values of NNBIN_CONFORMANCE_SHARD that split the suite into ``n``."""
    return [f"{k}/{n}" for k in range(1, n + 1)]


def plan(found: list[str], out: str, py: str = sys.executable) -> list[Step]:
    """The jobs, most important first; their caps add up to at most DEFAULT_BUDGET."""
    steps: list[Step] = [
        Job(
            "the GPU",
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                "--format=csv",
            ],
            10,
            expect=0.0,
        )
    ]
    if not found:
        return steps
    pytest = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "conformance"]
    test_needs = ("pytest", "hypothesis")
    libs = {"cupy": ("cupy",), "jax": ("jax",), "torch": ("torch",)}
    baselines = [b for b in ("jax-grad", "torch-autograd") if b.split("-")[0] in found]

    def bench(
        tag: str,
        size: int,
        steps: int,
        dtypes: str,
        repeats: int,
        cap: float,
        base: list[str],
        backends: list[str] = found,
        env: dict[str, str] | None = None,
        expect: float | None = None,
    ) -> Job:
        needs = tuple(sorted({m for b in backends for m in libs[b]}))
        return Job(
            f"benchmark, {tag}",
            [
                py,
                "-m",
                "nnbin",
                "bench",
                "--backends",
                ",".join(backends),
                "--sizes",
                str(size),
                "--steps",
                str(steps),
                "--dtypes",
                dtypes,
                "--repeats",
                str(repeats),
                "--baselines",
                ",".join(base) or "none",
                "--markdown",
                "--json",
                os.path.join(out, f"bench-{tag.replace(' ', '-')}.json"),
            ],
            cap,
            env or {},
            needs,
            expect,
        )

    # The conformance suites run together, each backend's split into shards run at once
    # (NNBIN_CONFORMANCE_SHARD; no pytest-xdist there). On the first H100 run (2026-11-28,
    # docs/gpu-runs/) the whole suite of 115 tests took jax 157 s beside the others and
    # cupy 94 s; it has 225 since (the deep networks, #17), so the shards are new and
    # have no time of their own yet: each is meant to take well under half its cap.
    correctness = [
        Job(
            f"conformance, {name} ({shard})",
            pytest,
            200 if name == "jax" else 150,
            {"NNBIN_BACKEND": name, "NNBIN_CONFORMANCE_SHARD": shard},
            (*test_needs, *libs[name]),
        )
        for name in found
        for shard in shards(CONFORMANCE_SHARDS[name])
    ]
    for name in ("torch", "cupy"):  # the array-API core replayed as CUDA graphs (#28)
        if name in found:
            correctness.append(
                Job(
                    f"conformance, {name} CUDA graphs",
                    [*pytest[:-1], "conformance/test_backend.py", "conformance/test_network.py"],
                    150,
                    {"NNBIN_BACKEND": name, "NNBIN_CORE_GRAPHS": "1"},
                    (*test_needs, *libs[name]),
                )
            )
    if "cupy" in found:
        correctness.append(
            Job(
                "conformance, cupy fast math",
                [*pytest, "-k", "float32"],
                150,
                {"NNBIN_BACKEND": "cupy", "NNBIN_CUDA_FAST_MATH": "1"},
                (*test_needs, "cupy"),
            )
        )
    correctness += [
        Job(
            f"seed job on {name}",
            [
                py,
                "-m",
                "nnbin",
                "train",
                "--backend",
                name,
                "--plot",
                os.path.join(out, f"boundary-{name}.png"),
            ],
            60,
            {},
            ("matplotlib", *libs[name]),
            5.8 if name == "cupy" else None,
        )
        for name in found
    ]
    steps.append(
        Group("correctness: conformance and the seed job on every GPU backend", correctness)
    )
    # the "-core" cells of torch and cupy at 2e4 and 2e6 are their CUDA-graph path (#28: <=
    # 65 us a step at 2e4, at least JAX's compiled loop at 2e6)
    graphs = {"NNBIN_CORE_GRAPHS": "1"}
    steps += [
        bench("2e4 float32", 20_000, 1000, "float32", 5, 45, baselines, env=graphs, expect=28.3),
        bench("2e6 float32", 2_000_000, 200, "float32", 3, 35, baselines, env=graphs, expect=21.3),
        bench("2e7 float32", 20_000_000, 50, "float32", 3, 75, baselines, expect=54.9),
    ]
    if "cupy" in found:
        profile = os.path.join(out, "profile.json")
        steps.append(
            Job(
                "fused step profile",
                [
                    py,
                    "-c",
                    "import sys; import nnbin.backend as b; b.available_names(); "
                    "from nnbin_backends.cuda.profile import main; sys.exit(main(sys.argv[1:]))",
                    profile,
                ],
                40,
                {},
                ("cupy",),
            )
        )
        steps.append(
            bench(
                "2e4 float32 no graphs",
                20_000,
                1000,
                "float32",
                5,
                30,
                [],
                ["cupy"],
                {"NNBIN_CUDA_GRAPHS": "0"},
            )
        )
    # the estimator as a user trains it (#27, #28): BinaryMLPClassifier's defaults (100 ReLU,
    # Adam, batches of 200) for 10 epochs on make_classification(200_000, 20), fit time and
    # held-out accuracy on every GPU backend beside scikit-learn on the machine's cores;
    # torch's and cupy's cores replay as CUDA graphs (NNBIN_CORE_GRAPHS=1)
    steps.append(
        Job(
            "estimator on the GPU, classification-200k (adam)",
            [py, "-m", "nnbin", "quality", "--datasets", "classification-200k",
             "--settings", "adam", "--backends", ",".join(found)],
            45,
            graphs,
            ("sklearn", *sorted({m for b in found for m in libs[b]})),
        )
    )  # fmt: skip
    return steps


def _missing(job: Job) -> list[str]:
    return [m for m in job.needs if importlib.util.find_spec(m) is None]


def _run_together(jobs: list[Job], env: dict[str, str], cap: float) -> list[tuple[int, str, float]]:
    """Start every job, wait for all (each killed at ``cap`` seconds); exit status, output
    and seconds of each. Output goes to a file per job, so no pipe fills up while another
    job is waited for."""
    t0 = time.perf_counter()
    results: list[tuple[int, str, float]] = []
    with contextlib.ExitStack() as stack:
        started: list[tuple[subprocess.Popen[bytes] | None, Any, str]] = []
        for job in jobs:
            log = stack.enter_context(tempfile.TemporaryFile())
            try:
                started.append(
                    (
                        subprocess.Popen(
                            job.cmd, stdout=log, stderr=subprocess.STDOUT, env={**env, **job.env}
                        ),
                        log,
                        "",
                    )
                )
            except OSError as exc:  # the program is not there (nvidia-smi without a driver)
                started.append((None, log, str(exc)))
        # each job's own time: poll them all (waiting in turn would give a job that ended
        # early the time of the one waited for before it)
        ended: dict[int, float] = {}
        while True:
            now = time.perf_counter()
            for i, (proc, _, _) in enumerate(started):
                if i not in ended and (proc is None or proc.poll() is not None):
                    ended[i] = now - t0
            if len(ended) == len(started) or now - t0 >= cap:
                break
            time.sleep(0.05)
        for i, (maybe, log, error) in enumerate(started):
            if maybe is None:
                results.append((127, error, 0.0))
                continue
            note = ""
            if i not in ended:
                maybe.kill()
                note = f"\n(stopped after {cap:.0f} s)"
            maybe.wait()
            code = 124 if note else maybe.returncode
            log.seek(0)
            text = log.read().decode(errors="replace") + note
            results.append((code, text, ended.get(i, time.perf_counter() - t0)))
    return results


def _describe(step: Step) -> list[str]:
    jobs = step.jobs if isinstance(step, Group) else [step]
    lines = [
        f"[cap {step.cap:3.0f} s] {step.title}"
        + (" (in parallel)" if isinstance(step, Group) else "")
    ]
    for job in jobs:
        extra = " ".join(f"{k}={v}" for k, v in job.env.items())
        took = "not run yet" if job.expect is None else f"took {job.expect:.0f} s on the H100"
        lines.append(f"    {job.title} ({took}): {extra + ' ' if extra else ''}{' '.join(job.cmd)}")
    return lines


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _seconds(text: str) -> float:
    """A budget: a finite number of seconds > 0 (nan would turn the budget off)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def _folder(out: str) -> str | None:
    """Why ``out`` cannot be the report's folder (None: it can; created if missing)."""
    if not os.path.lexists(out):
        return None
    if os.path.islink(out):
        return f"{out} is a symbolic link: give a folder (it is created if missing)"
    if not os.path.isdir(out):
        kind = "a regular file" if os.path.isfile(out) else "a device, FIFO or socket"
        return f"{out} is {kind}, not a folder: give a folder (it is created if missing)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python3 -m conformance.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder for report.md, the JSON and the figures")
    parser.add_argument(
        "--budget",
        type=_seconds,
        default=DEFAULT_BUDGET,
        help=f"seconds for everything ({DEFAULT_BUDGET:.0f})",
    )
    parser.add_argument("--plan", action="store_true", help="print the jobs, run none")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the jobs whose title contains TEXT (repeatable); 'the GPU' always runs",
    )
    parser.add_argument(
        "--assume",
        default=None,
        metavar="BACKENDS",
        help="take these backends (comma-separated) as the GPU ones instead "
        "of looking: to see the plan of another machine, or to try the "
        "check's flow on a machine without a GPU",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    why = _folder(args.out)
    if why is not None:
        parser.error(why)
    start = time.perf_counter()
    env = child_env()
    if args.assume is not None:
        named = [b.strip() for b in args.assume.split(",") if b.strip()]
        unknown = [b for b in named if b not in GPU_BACKENDS]
        if unknown or not named:
            what = f"unknown backend(s) {', '.join(unknown)}" if unknown else "no backend named"
            parser.error(f"--assume: {what}; the GPU-capable ones are {', '.join(GPU_BACKENDS)}")
        found = named
    else:
        found = gpu_backends()
    steps = plan(found, args.out)
    if args.only:
        kept: list[Step] = []
        for step in steps:
            if isinstance(step, Group):
                jobs = [j for j in step.jobs if any(t in j.title for t in args.only)]
                if jobs:
                    kept.append(Group(step.title, jobs))
            elif step.title == "the GPU" or any(t in step.title for t in args.only):
                kept.append(step)
        if found and all(getattr(k, "title", "") == "the GPU" for k in kept):
            parser.error(f"--only {args.only} matches no job; --plan lists their titles")
        steps = kept
    if args.plan:
        for step in steps:
            print("\n".join(_describe(step)))
        print(
            f"caps add up to {sum(s.cap for s in steps):.0f} s of a {args.budget:.0f} s "
            f"budget" + ("" if found else "; no GPU-capable backend found here")
        )
        return 0
    if not found:
        print(
            "no GPU-capable backend found here (cupy with a CUDA device, jax with a GPU, "
            "torch with CUDA): nothing was checked"
        )
        return NO_GPU
    os.makedirs(args.out, exist_ok=True)
    head = [
        f"# nnbin GPU check, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n",
        f"GPU-capable backends found: {', '.join(found)}; budget {args.budget:.0f} s; "
        f"`{' '.join([sys.executable, '-m', 'conformance.gpucheck', *sys.argv[1:]])}`\n",
    ]
    sections: list[str] = []
    cut: list[str] = []
    missing: list[str] = []
    failed: list[str] = []

    def write() -> None:
        tail = [f"Failed: {', '.join(failed) or 'nothing'}.\n"]
        if missing:
            tail.append(f"Not run (a package is missing): {'; '.join(missing)}.\n")
        if cut:
            tail.append(f"Not run (out of time): {', '.join(cut)}.\n")
        with open(os.path.join(args.out, "report.md"), "w") as fh:
            fh.write("\n".join(head + tail + sections))

    for step in steps:
        jobs = step.jobs if isinstance(step, Group) else [step]
        runnable = []
        for job in jobs:
            lacks = _missing(job)
            if lacks:
                missing.append(f"{job.title} (needs {', '.join(lacks)})")
            else:
                runnable.append(job)
        if not runnable:
            continue
        cap = max(j.cap for j in runnable)
        left = args.budget - (time.perf_counter() - start)
        if cap > left:
            cut += [j.title for j in runnable]
            continue
        for job, (code, text, took) in zip(
            runnable, _run_together(runnable, env, cap), strict=True
        ):
            if code != 0 and job.title != "the GPU":
                failed.append(job.title)
            extra = " ".join(f"{k}={v}" for k, v in job.env.items())
            sections.append(
                f"## {job.title}\n\n`{extra + ' ' if extra else ''}"
                f"{' '.join(job.cmd)}`: exit {code}, {took:.1f} s\n\n"
                f"```\n{text[-20000:]}\n```\n"
            )
            print(f"{job.title}: exit {code}, {took:.1f} s", flush=True)
        write()
    write()
    print(
        f"report written to {os.path.join(args.out, 'report.md')}; "
        f"{'SOMETHING FAILED' if failed else 'nothing failed'}"
        f"{'; not run: ' + ', '.join(cut + missing) if cut or missing else ''}"
    )
    return 1 if failed or cut else 0


if __name__ == "__main__":
    sys.exit(main())
