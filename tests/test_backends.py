"""Backend registry: selection, errors, lazy imports, entry points."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

import nnbin
import nnbin.backend as backend_mod

ROOT = Path(__file__).resolve().parents[1]


def test_a_source_tree_reads_the_backends_from_pyproject():
    """A built-in backend is named in pyproject's entry points (and nox's list) only: a
    source-tree run reads that table, and every entry is a Backend of that name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"]["nnbin.backends"]
    assert backend_mod._source_tree_backends() == declared
    for name in declared:
        cls = backend_mod.backend_class(name)
        assert issubclass(cls, nnbin.Backend) and cls.name == name


def test_default_is_numpy_and_env_is_read_per_call(monkeypatch):
    monkeypatch.delenv("NNBIN_BACKEND", raising=False)
    assert nnbin.get_backend().name == "numpy"
    pytest.importorskip("array_api_strict")
    monkeypatch.setenv("NNBIN_BACKEND", "strict")
    assert nnbin.get_backend().name == "strict"


def test_unknown_backend_names_the_valid_ones(monkeypatch):
    monkeypatch.setenv("NNBIN_BACKEND", "nope")
    with pytest.raises(nnbin.UnknownBackendError) as info:
        nnbin.get_backend()
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "'nope'" in msg and "numpy" in msg and "strict" in msg and "\n" not in msg


class _Missing(nnbin.Backend):
    name = "missing"
    about = backend_mod.About(
        package="surely_not_an_installed_package_nnbin", extra="missing-extra"
    )


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(
        backend_mod, "backend_class", lambda name: _Missing if name == "missing" else None
    )
    with pytest.raises(
        nnbin.BackendUnavailableError, match=r"pip install 'nnbin\[missing-extra\]'"
    ):
        nnbin.get_backend("missing")


def test_third_party_backend_registers_through_entry_points(monkeypatch):
    """A backend from another package is found through the same entry-point group."""
    from importlib.metadata import EntryPoint

    fake = EntryPoint("fake", "nnbin_backends.numpy:NumpyBackend", "nnbin.backends")
    real = backend_mod.entry_points

    def eps(group):
        return [*real(group=group), fake] if group == "nnbin.backends" else real(group=group)

    backend_mod._registered.cache_clear()
    monkeypatch.setattr(backend_mod, "entry_points", eps)
    try:
        assert "fake" in nnbin.available_names()
        assert backend_mod.backend_class("fake").__name__ == "NumpyBackend"
    finally:
        monkeypatch.undo()
        backend_mod._registered.cache_clear()


def test_numpy_training_imports_no_other_array_library():
    code = (
        "import sys, nnbin\n"
        "X, y = nnbin.two_gaussians(n_per_class=100)\n"
        "nnbin.train(X, y, steps=5)\n"
        "libs = ('cupy', 'jax', 'torch', 'dask', 'array_api_strict')\n"
        "bad = [m for m in libs if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "NNBIN_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_backend_of_recognises_arrays():
    import numpy as np

    assert nnbin.backend_of(np.zeros(2)).name == "numpy"
    with pytest.raises(nnbin.InvalidInputError, match="does not know arrays"):
        nnbin.backend_of([1.0, 2.0])


def _python(code: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "NNBIN_BACKEND"}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


def test_cupy_missing_or_without_a_gpu_is_one_clear_line(tmp_path):
    """Without cupy: the extra to install. With cupy but no CUDA device (a stand-in cupy
    whose runtime finds none): 'no CUDA device was found'. Both exit 2 from the CLI."""
    import importlib.util
    import os

    cli = "import sys, nnbin.cli; sys.exit(nnbin.cli.main(['train', '--no-plot']))"
    if importlib.util.find_spec("cupy") is None:
        out = _python(cli, NNBIN_BACKEND="cupy")
        assert out.returncode == 2
        assert out.stderr.strip() == (
            "nnbin: error: the 'cupy' backend needs the 'cupy' package: pip install 'nnbin[cupy]'"
        )
    fake = tmp_path / "cupy"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "class _Runtime:\n"
        "    @staticmethod\n"
        "    def getDeviceCount():\n"
        "        raise RuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')\n"
        "class cuda:\n"
        "    runtime = _Runtime\n"
    )
    out = _python(
        cli,
        NNBIN_BACKEND="cupy",
        PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device was found" in lines[0]


def test_training_loop_synchronises_only_on_logging_steps(monkeypatch):
    """Host transfers (float()/bool() of a device array) happen once up front (validation),
    once at the end (final loss) and once per logged step, never per step."""
    xp = pytest.importorskip("array_api_strict")
    array_type = type(xp.asarray(0.0))
    calls = []
    for dunder in ("__float__", "__bool__", "__int__", "__array__", "__dlpack__"):
        if hasattr(array_type, dunder):
            real = getattr(array_type, dunder)

            def counting(self, *a, _real=real, _name=dunder, **k):
                calls.append(_name)
                return _real(self, *a, **k)

            monkeypatch.setattr(array_type, dunder, counting)
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    Xs, ys = xp.asarray(X), xp.asarray(y)

    def transfers(steps, log_every):
        calls.clear()
        nnbin.train(Xs, ys, hidden=4, steps=steps, log_every=log_every)
        return len(calls)

    assert transfers(5, 0) == transfers(60, 0)  # independent of the step count
    assert transfers(60, 20) == transfers(60, 0) + 3  # one per logged step (0, 20, 40)


def test_source_tree_without_install_finds_the_builtin_backends():
    """PYTHONPATH=src (the GPU machine's way): no entry points, backends/ still found."""
    src = str(ROOT / "src")
    code = (
        "import sys, importlib.metadata as md\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
        "sys.path[:0] = [" + repr(src) + "]\n"
        "for m in [m for m in sys.modules if m.startswith(('nnbin', '__editable'))]:\n"
        "    del sys.modules[m]\n"
        "md.entry_points = lambda group=None: []\n"
        "import nnbin\n"
        "be = nnbin.get_backend('numpy')\n"
        "print(type(be).__module__, nnbin.backend.__file__)\n"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    module, path = out.stdout.split()
    assert module == "nnbin_backends.numpy" and path.startswith(src)


def test_gpucheck_without_a_gpu_says_so_and_nox_does_not_fail(tmp_path, capsys):
    from conformance import gpucheck

    if gpucheck.gpu_backends():
        pytest.skip("a GPU is present: the real check runs instead (nox -s gpu)")
    assert gpucheck.main([str(tmp_path / "out")]) == gpucheck.NO_GPU == 3
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "nothing was checked" in out
    assert not (tmp_path / "out").exists()
    noxfile = (Path(__file__).parent.parent / "noxfile.py").read_text()
    assert "success_codes=[0, 3]" in noxfile


def _titles(steps):
    from conformance import gpucheck

    out = []
    for s in steps:
        out += [j.title for j in s.jobs] if isinstance(s, gpucheck.Group) else [s.title]
    return out


def test_gpucheck_plan_fits_the_budget_most_important_first():
    from conformance import gpucheck

    steps = gpucheck.plan(["cupy", "jax", "torch"], "OUT", py="python3")
    assert sum(s.cap for s in steps) <= gpucheck.DEFAULT_BUDGET
    assert steps[0].title == "the GPU"
    group = steps[1]
    assert isinstance(group, gpucheck.Group)
    suites = [j for j in group.jobs if j.cmd[-1] == "conformance"]
    shards = gpucheck.CONFORMANCE_SHARDS
    assert group.jobs[: len(suites)] == suites and len(suites) == sum(shards.values())
    for name, n in shards.items():
        mine = [j for j in suites if j.env["NNBIN_BACKEND"] == name]
        assert [j.title for j in mine] == [
            f"conformance, {name} ({k}/{n})" for k in range(1, n + 1)
        ]
        assert [j.env.get("NNBIN_CONFORMANCE_SHARD") for j in mine] == [
            f"{k}/{n}" for k in range(1, n + 1)
        ]
    assert {"seed job on cupy", "conformance, cupy fast math"} <= {j.title for j in group.jobs}
    # timings run alone, after the correctness checks, float32 at the three sizes first
    assert [s.title for s in steps[2:5]] == [
        "benchmark, 2e4 float32",
        "benchmark, 2e6 float32",
        "benchmark, 2e7 float32",
    ]
    assert not any(isinstance(s, gpucheck.Group) for s in steps[2:])
    bench = steps[2].cmd
    assert bench[bench.index("--baselines") + 1] == "jax-grad,torch-autograd"
    assert bench[bench.index("--steps") + 1] == "1000"
    no_graphs = next(s for s in steps if s.title.endswith("no graphs"))
    assert no_graphs.env == {"NNBIN_CUDA_GRAPHS": "0"} and "none" in no_graphs.cmd
    graphs = next(j for j in group.jobs if j.title == "conformance, torch CUDA graphs")
    assert graphs.env == {"NNBIN_BACKEND": "torch", "NNBIN_CORE_GRAPHS": "1"}
    assert steps[2].env == steps[3].env == {"NNBIN_CORE_GRAPHS": "1"}  # torch-core: graphs
    fast = next(j for j in group.jobs if j.title.endswith("fast math"))
    assert fast.env["NNBIN_CUDA_FAST_MATH"] == "1" and fast.cmd[-2:] == ["-k", "float32"]
    assert "fused step profile" in _titles(steps)
    user = steps[-1]  # the estimator's defaults on make_classification(200_000, 20)
    assert user.title.startswith("estimator on the GPU") and user.env == {"NNBIN_CORE_GRAPHS": "1"}
    assert user.cmd[-3:] == ["adam", "--backends", "cupy,jax,torch"] and "sklearn" in user.needs
    # without cupy: no fused-step jobs, no baselines of a missing library
    only_jax = gpucheck.plan(["jax"], "OUT")
    assert not any("cupy" in t or "profile" in t for t in _titles(only_jax))
    cmd = only_jax[2].cmd
    assert cmd[cmd.index("--baselines") + 1] == "jax-grad"
    assert gpucheck.plan([], "OUT")[0].title == "the GPU" and len(gpucheck.plan([], "O")) == 1


def test_gpucheck_parent_never_imports_a_gpu_library(tmp_path):
    """Discovery runs in a child: the check's own process imports no GPU library (JAX would
    reserve 75% of the GPU for the whole run), and the children get the allocator settings."""
    import subprocess
    import sys

    code = (
        "import sys; from conformance import gpucheck; gpucheck.gpu_backends(); "
        "gpucheck.main([sys.argv[1], '--plan']); "
        "bad = {'jax', 'torch', 'cupy'} & set(sys.modules); assert not bad, bad; "
        "env = gpucheck.child_env({'CUPY_TF32': '1'}); "
        "assert env['XLA_PYTHON_CLIENT_PREALLOCATE'] == 'false' and 'CUPY_TF32' not in env"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr


def test_gpucheck_keeps_to_its_budget_and_reports_as_it_goes(tmp_path, monkeypatch, capsys):
    import sys

    from conformance import gpucheck

    py = sys.executable
    steps = [
        gpucheck.Job("quick", [py, "-c", "print('hello')"], 10),
        gpucheck.Group(
            "together",
            [
                gpucheck.Job("slow", [py, "-c", "import time; time.sleep(30)"], 3),
                gpucheck.Job("fails", [py, "-c", "import sys; print('boom'); sys.exit(4)"], 3),
                gpucheck.Job("lacks", [py, "-c", "pass"], 3, needs=("no_such_package_x",)),
            ],
        ),
        gpucheck.Job("too long for what is left", [py, "-c", "print('no')"], 30),
    ]
    monkeypatch.setattr(gpucheck, "gpu_backends", lambda: ["cupy"])
    monkeypatch.setattr(gpucheck, "plan", lambda found, out: steps)
    t0 = time.perf_counter()
    assert gpucheck.main([str(tmp_path), "--budget", "25"]) == 1
    assert time.perf_counter() - t0 < 15  # the group ran at once, and "slow" was stopped
    report = (tmp_path / "report.md").read_text()
    assert "## quick" in report and "hello" in report
    assert "## slow" in report and "exit 124" in report and "(stopped after 3 s)" in report
    assert "## fails" in report and "exit 4" in report and "boom" in report
    # each job's own time, not the time it was waited for (after "slow", listed before it)
    took = re.search(r"exit 4, ([0-9.]+) s", report)
    assert took and float(took.group(1)) < 2.5, report
    assert "Failed: slow, fails." in report
    assert "Not run (a package is missing): lacks (needs no_such_package_x)." in report
    # a job whose cap does not fit what is left is not started (not killed half-way)
    assert "Not run (out of time): too long for what is left." in report
    assert "## too long" not in report
    assert gpucheck.main([str(tmp_path), "--plan"]) == 0
    printed = capsys.readouterr().out
    assert "[cap  10 s] quick" in printed and "(in parallel)" in printed
    # the rerun of what failed: --only keeps the jobs it names, inside groups too
    assert gpucheck.main([str(tmp_path), "--only", "quick", "--budget", "24"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## quick" in report and "## slow" not in report and "Failed: nothing." in report
    assert gpucheck.main([str(tmp_path), "--only", "fails", "--budget", "24"]) == 1
    report = (tmp_path / "report.md").read_text()
    assert "## fails" in report and "## slow" not in report and "## quick" not in report
    with pytest.raises(SystemExit):
        gpucheck.main([str(tmp_path), "--only", "no such job"])


# What the GPU test machine lacks (../shared/GPU.md): importing any of them there fails.
NOT_ON_THE_GPU_MACHINE = ("array_api_strict", "dask", "distributed", "nox", "ndonnx")


@pytest.mark.heavy
def test_gpucheck_flow_runs_with_only_what_the_gpu_machine_has(tmp_path):
    """The check on the CPU, in a subprocess whose every process (the check and its jobs)
    fails to import what the GPU machine does not have: torch stands in for a GPU backend
    (--assume); its seed job runs and the report is rewritten as it goes; a second run with
    a small budget lists what it cut; and the benchmark command the check's jobs run (with
    its baseline) imports nothing the GPU machine lacks (run small here: the check's own
    sizes are made for a GPU)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("torch")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        f"BLOCKED = {NOT_ON_THE_GPU_MACHINE!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'{name} is not on the GPU machine')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    root = Path(__file__).parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(blocker), str(root / "src"), str(root)]),
        "NNBIN_BACKEND": "",
        "MPLBACKEND": "Agg",
    }
    out = tmp_path / "out"

    def run(*args):
        return subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, env=env, cwd=root, timeout=300
        )

    probe = run("-c", "import array_api_strict")
    assert "is not on the GPU machine" in probe.stderr  # the blocker works
    check = run(
        "-m",
        "conformance.gpucheck",
        str(out),
        "--assume",
        "torch",
        "--only",
        "seed job",
        "--budget",
        "100",
    )
    report = (out / "report.md").read_text()
    everything = report + check.stdout + check.stderr
    assert "## seed job on torch" in report, report
    for sign in ("not on the GPU machine", "ModuleNotFoundError", "ImportError", "Traceback"):
        assert sign not in everything, report
    if "exit 124" in report:  # a CPU too busy for the job's cap (made for a GPU) stopped it
        assert "Failed: seed job on torch." in report and check.returncode == 1, report
    else:
        assert "training accuracy 1.0000" in report, report
        assert "Failed: nothing." in report and check.returncode == 0, report
    bench = run(
        "-m",
        "nnbin",
        "bench",
        "--backends",
        "torch",
        "--sizes",
        "200",
        "--steps",
        "3",
        "--repeats",
        "1",
        "--dtypes",
        "float32",
        "--baselines",
        "torch-autograd",
        "--json",
        str(tmp_path / "b.json"),
    )
    assert bench.returncode == 0 and "not on the GPU machine" not in bench.stderr, bench.stderr
    cut = run("-m", "conformance.gpucheck", str(out), "--assume", "torch", "--budget", "15")
    report = (out / "report.md").read_text()
    assert cut.returncode == 1
    assert (
        "Not run (out of time): conformance, torch (1/2), conformance, torch (2/2), "
        "conformance, torch CUDA graphs, seed job on torch, benchmark, 2e4"
    ) in report


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["OUT", "--budget", "nan"], "--budget: must be a finite number of seconds > 0, got 'nan'"),
        (["OUT", "--budget", "-1"], "got '-1'"),
        (["OUT", "--budget", "0"], "got '0'"),
        (["OUT", "--budget", "inf"], "got 'inf'"),
        (["OUT", "--budget", "x"], "got 'x'"),
        (["OUT", "--assume", "nosuch"], "--assume: unknown backend(s) nosuch; the GPU-capable"),
        (["OUT", "--assume", ","], "--assume: no backend named"),
        (["/dev/null"], "/dev/null is a device, FIFO or socket, not a folder"),
        (["a-file"], "a-file is a regular file, not a folder"),
        (["a-link"], "a-link is a symbolic link"),
    ],
)
def test_gpucheck_bad_arguments_are_one_line_and_change_nothing(
    argv, needle, tmp_path, capsys, monkeypatch
):
    import os
    import stat

    from conformance import gpucheck

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("keep")
    os.symlink(tmp_path / "a-file", tmp_path / "a-link")
    null = os.stat("/dev/null")
    with pytest.raises(SystemExit) as info:
        gpucheck.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-link"]
    assert (tmp_path / "a-file").read_text() == "keep"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_ino == null.st_ino


def test_a_backend_of_the_older_protocol_is_told_where_its_parts_go():
    """A third-party backend written before the binding was cut to its protocol (its facts
    as class attributes, the benchmark's hooks and the fused step on itself) is one
    TypeError that says where each part goes now, never silently ignored."""
    with pytest.raises(TypeError) as info:

        class Old(nnbin.Backend):
            name = "old"
            package = "numpy"
            memory_nh = 0.5

            def release_memory(self):
                pass

            def fused_run(self, *args, **kwargs):
                pass

            def run(self, *args, **kwargs):
                pass

            def step_context(self):
                pass

    said = str(info.value)
    assert "package: its about = About(...)" in said and "memory_nh: its about" in said
    assert "release_memory: a method of its Tools" in said
    assert "fused_run: its Runners" in said
    assert "run: nnbin.loop.run(backend, ...)" in said
    assert "step_context: step_context(self, X) takes the run's data X now" in said
