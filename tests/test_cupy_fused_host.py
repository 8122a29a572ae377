"""The cupy backend's fused-step driver (buffers, launch shapes, scalar types, streams,
CUDA-graph capture and replay, workspaces reused across runs, logging, divergence), run on
the CPU against the stand-in for CuPy of tests/cupy_standin.py (the kernels' exact text under
the SIMT emulator, NumPy arrays as device memory, streams that run only when ordered to). So
a driver that hands back results without ordering the caller's stream after its own leaves
them unfilled (NaN) for a caller that synchronises its own stream, and these tests fail.
What only a GPU can show (CUDA semantics beyond that model, speed) is not shown."""

from __future__ import annotations

import types

import numpy as np
import pytest
from cupy_standin import DeviceArray, fake_cupy
from cupy_standin import done as _done

import nnbin
from nnbin.loop import Run, drive
from nnbin.loop import run as run_loop
from nnbin.options import Config


def done(backend) -> None:
    """The caller's stream synchronised (see cupy_standin.done)."""
    _done(backend._cupy)


def python_loop(params, X, y, **run):
    """The array-API core, eagerly (one Python iteration a step), in the one loop: the plain
    reference a backend's own path is held against."""
    return drive(Run(params, X, y, run["lr"]), **run)


@pytest.fixture
def backend(tmp_path, monkeypatch):
    # The emulator is about a thousand times slower than a GPU: chunks bounded by time would
    # be a few steps long here. What these tests check is the driver (graphs, streams,
    # buffers) under the schedule a GPU sees, where a chunk reaches the next logged step.
    monkeypatch.setattr("nnbin.loop.CALL_SECONDS", 1e9)
    from collections import OrderedDict

    from nnbin_backends.cuda.fused import CupyFused
    from nnbin_backends.cupy import CupyBackend

    be = object.__new__(CupyBackend)  # no GPU here: skip __init__'s device check
    be._cupy = fake_cupy(tmp_path)
    be.xp = nnbin.get_backend("numpy").xp
    be._fused = CupyFused(be._cupy)
    be._graphs, be.graph_workspaces = {}, OrderedDict()
    yield be
    DeviceArray.cuda = None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_training_matches_the_core(backend, dtype):
    X, y = nnbin.two_gaussians(n_per_class=300, seed=0)
    X, y = X.astype(dtype), y.astype(dtype)
    p0 = nnbin.init_params(1, 8, seed=2, dtype=dtype)
    before = [p.copy() for p in p0]
    fused = run_loop(backend, p0, X, y, lr=1.0, steps=25, log_every=10)
    done(backend)
    core = python_loop(p0, X, y, lr=1.0, steps=25, log_every=10)
    assert fused.loop.startswith("fused CUDA step")
    assert [s for s, _ in fused.history] == [0, 10, 20]
    tol = 1e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(
        [v for _, v in fused.history], [v for _, v in core.history], rtol=tol
    )
    for a, b in zip(fused.params, core.params):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    for a, b in zip(p0, before):  # the caller's parameters are never written
        np.testing.assert_array_equal(a, b)
    again = run_loop(backend, p0, X, y, lr=1.0, steps=25, log_every=10)
    done(backend)
    for a, b in zip(fused.params, again.params):
        assert a.tobytes() == b.tobytes()


def test_fused_false_runs_the_core_and_limits_fall_back(backend):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    assert run_loop(backend, p0, X, y, lr=1.0, steps=2, log_every=1, fused=False).loop.startswith(
        "python loop"
    )
    wide = nnbin.init_params(1, 300, seed=0)
    assert run_loop(backend, wide, X, y, lr=1.0, steps=1, log_every=1).loop.startswith("python")
    with pytest.raises(nnbin.BackendUnavailableError, match="no fused step"):
        run_loop(backend, wide, X, y, lr=1.0, steps=1, log_every=1, fused=True)


def test_fused_divergence_keeps_a_copy_of_the_last_finite_parameters(backend):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    with pytest.raises(nnbin.TrainingDivergedError) as info, np.errstate(all="ignore"):
        run_loop(backend, p0, X, y, lr=1e308, steps=6, log_every=1)
    err = info.value
    assert err.step == 1 and err.last_finite_step == 0
    for a, b in zip(err.params, p0):
        np.testing.assert_array_equal(a, b)


def test_fused_loss_and_grads_match_the_core(backend):
    X, y = nnbin.two_gaussians(n_per_class=40, seed=1, n_features=3)
    p0 = nnbin.init_params(3, 5, seed=1)
    loss, grads = backend.runners.fused.loss_and_grads(p0, X, y)
    done(backend)
    want_loss, want = nnbin.loss_and_grads(p0, X, y)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-12)
    # each gradient an allocation of its own (XLA wants aligned buffers, and the workspace's
    # gradient buffer is reused by the next run), never a slice of one buffer
    (ws,) = backend._fused._workspaces._items.values()
    for i, a in enumerate(grads):
        assert not np.shares_memory(a, ws.grad) and not np.shares_memory(loss, ws.loss)
        assert not any(np.shares_memory(a, b) for b in grads[i + 1 :])
    for a, b in zip(grads, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "steps,log_every,graph_steps",
    [
        (25, 10, 500),  # the seed job's shape: a logging step, then a 9-step graph, ...
        (11, 0, 4),  # no logging: graphs of at most 4 steps, replayed
        (11, 0, 3),  # odd graphs back to back: 3, 3, 3, 2 steps
        (10, 4, 500),  # odd-length graphs (parity of the two buffers), a 1-step tail
        (3, 1, 500),  # every step logged: no graph at all
    ],
)
def test_graph_replay_gives_the_same_bits_as_launching_every_step(
    backend, steps, log_every, graph_steps
):
    X, y = nnbin.two_gaussians(n_per_class=150, seed=3)
    p0 = nnbin.init_params(1, 4, seed=3)
    backend._fused.graph_steps = graph_steps
    cuda = backend._cupy.cuda
    graphed = run_loop(
        backend, p0, X, y, lr=1.0, steps=steps, log_every=log_every,
        config=Config(fused_graphs=True),
    )  # fmt: skip
    done(backend)
    log = list(cuda.log)
    cuda.log.clear()
    eager = run_loop(
        backend, p0, X, y, lr=1.0, steps=steps, log_every=log_every,
        config=Config(fused_graphs=False),
    )  # fmt: skip
    done(backend)
    assert "CUDA-graph" in graphed.loop and "CUDA-graph" not in eager.loop
    assert graphed.history == eager.history
    for a, b in zip(graphed.params, eager.params):
        assert a.tobytes() == b.tobytes()
    # every step ran exactly once: two kernels a step, launched or inside a graph replay
    ran = sum(2 for what, _ in log if what == "nnbin_partials") + sum(
        int(what.split()[2]) for what, _ in log if what.startswith("graph of")
    )
    assert ran == 2 * steps
    replays = [what for what, _ in log if what.startswith("graph of")]
    if log_every == 1:
        assert replays == []
    assert all(int(r.split()[2]) <= 2 * graph_steps for r in replays)
    # ordered after the caller's work, and the caller after it, by events, not host waits
    log = [e for e in log if e[1] != "host"]  # compilations
    stream = log[0][1]
    assert stream != "null" and log[:4] == [
        ("record", stream),
        (f"wait for {stream}", "null"),  # the workspace's last run
        ("record", "null"),
        ("wait for null", stream),
    ]  # the caller's work, copies
    assert log[-2:] == [("record", stream), (f"wait for {stream}", "null")]
    captures = [e for e in log if e[0] == "begin capture"]
    assert len(captures) <= 2 * 2  # at most one graph per length and parity


def test_a_graph_is_captured_once_and_replayed(backend):
    X, y = nnbin.two_gaussians(n_per_class=100, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    run_loop(backend, p0, X, y, lr=1.0, steps=41, log_every=10)
    done(backend)
    log = backend._cupy.cuda.log
    assert [e[0] for e in log].count("begin capture") == 1  # steps 1-9, 11-19, ... alike
    assert [e[0] for e in log].count("graph of 18 launches") == 4
    assert [e[0] for e in log].count("nnbin_partials") == 5  # the logging steps


def test_local_memory_refuses_the_fused_step_with_the_reason(backend, monkeypatch):
    from nnbin_backends.cuda.fused import LOCAL_LIMIT

    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    kernel = types.SimpleNamespace(local_size_bytes=0)
    monkeypatch.setattr(
        backend._fused, "_kernels", lambda d, h, dtype, fast=False: (kernel, kernel)
    )
    assert backend.runners.fused.refusal(p0, X) is None  # registers only: the fast case
    # D = 64, H = 256, float64 spills ~135 KiB a thread: never, whatever memory is free
    kernel.local_size_bytes = 137_744
    assert backend.runners.fused.refusal(p0, X).startswith("its kernel would keep 137,744 bytes")
    run = run_loop(backend, p0, X, y, lr=1.0, steps=1, log_every=1)
    assert run.loop.startswith("python loop") and "137,744 bytes a thread" in run.loop
    with pytest.raises(nnbin.BackendUnavailableError, match="137,744 bytes a thread"):
        run_loop(backend, p0, X, y, lr=1.0, steps=1, log_every=1, fused=True)
    # a small spill: allowed while, for every resident thread, it takes <= 1/4 of free memory
    kernel.local_size_bytes = LOCAL_LIMIT  # x 2048 threads x 2 SMs = 16 MiB
    assert backend.runners.fused.refusal(p0, X) is None
    backend._cupy.cuda.runtime.memGetInfo = lambda: (60 << 20, 80 << 30)  # 60 MiB free
    assert "a quarter of the free device memory" in backend.runners.fused.refusal(p0, X)
    core = run_loop(backend, p0, X, y, lr=1.0, steps=1, log_every=1, fused=False).loop
    assert core == (  # asked for the core: no reason to give for the fused step
        "python loop (array-API core); CUDA graphs of it off until verified on a GPU"
        " (cuda_graphs=True)"
    )


def test_the_registers_a_kernel_uses_set_the_grid(backend):
    from nnbin_backends.cuda import kernels as cuda_fused

    kernel = types.SimpleNamespace(num_regs=242)  # the seed network's, on an H100
    assert backend._fused._max_blocks(kernel) == 2 * 1  # 2 SMs x one 256-thread block each
    kernel.num_regs = 64
    assert backend._fused._max_blocks(kernel) == 2 * 4
    assert cuda_fused.partials_blocks(20_000, backend._fused._max_blocks(kernel)) == 8


def test_work_is_queued_and_the_caller_is_ordered_after_it(backend):
    """Right after run() the device work is still queued (the stand-in is asynchronous, as
    a GPU is); synchronising only the caller's stream runs all of it, because the run
    ordered the caller's stream after its own."""
    X, y = nnbin.two_gaussians(n_per_class=100, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    cuda = backend._cupy.cuda
    run = run_loop(backend, p0, X, y, lr=1.0, steps=25, log_every=10)
    assert cuda.pending() > 0 and np.isnan(np.asarray(run.params.W1)).all()
    done(backend)
    assert cuda.pending() == 0 and np.isfinite(np.asarray(run.params.W1)).all()


def test_a_workspace_and_its_graphs_are_reused_across_runs(backend):
    from nnbin_backends.cuda.driver import MAX_WORKSPACES

    X, y = nnbin.two_gaussians(n_per_class=100, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    p1 = nnbin.init_params(1, 4, seed=1)
    cuda = backend._cupy.cuda

    def captures():
        return [e[0] for e in cuda.log].count("begin capture")

    first = run_loop(backend, p0, X, y, lr=1.0, steps=25, log_every=10)
    done(backend)
    kept = [np.array(p) for p in first.params]
    assert captures() == 2  # 9 steps (twice replayed) and a 4-step tail
    other = run_loop(backend, p1, X, y, lr=1.0, steps=25, log_every=10)  # new start, same data
    done(backend)
    assert captures() == 2 and len(backend._fused._workspaces) == 1  # nothing captured anew
    # what run 1 handed back is its own: run 2 reused the buffers, not those arrays
    for a, b in zip(first.params, kept):
        assert a.tobytes() == b.tobytes()
    fresh = python_loop(p1, X, y, lr=1.0, steps=25, log_every=10)
    for a, b in zip(other.params, fresh.params):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    again = run_loop(backend, p0, X, y, lr=1.0, steps=25, log_every=10)
    done(backend)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(again.params, kept))
    # another step size is another graph (lr is captured in it): a new workspace
    run_loop(backend, p0, X, y, lr=0.5, steps=25, log_every=10)
    done(backend)
    assert captures() == 4 and len(backend._fused._workspaces) == 2
    # a workspace in use (another thread's run) is not shared: a fresh one, not cached
    (busy,) = [w for k, w in backend._fused._workspaces._items.items() if k[8] == 1.0]
    busy.lock.acquire()
    try:
        run_loop(backend, p0, X, y, lr=1.0, steps=25, log_every=10)
        done(backend)
    finally:
        busy.lock.release()
    assert captures() == 6 and len(backend._fused._workspaces) == 2
    for lr in (0.1, 0.2, 0.3, 0.4):
        run_loop(backend, p0, X, y, lr=lr, steps=3, log_every=1)
    done(backend)
    assert len(backend._fused._workspaces) == MAX_WORKSPACES


# The conformance suite's fused-path checks, run against this stand-in: they pass on the
# emulated kernels, and a bug planted in the kernel text fails them (what the GPU run will
# do with the real device; the seed-sized cases are left to it, being slow to emulate).
@pytest.fixture
def emulated(backend):
    import contextlib

    @contextlib.contextmanager
    def forbid(x):
        DeviceArray.forbidden = True
        try:
            yield
        finally:
            DeviceArray.forbidden = False

    backend.owns = lambda x: isinstance(x, np.ndarray)
    backend.to_host = lambda x: (done(backend), np.asarray(x))[1]  # asnumpy synchronises
    backend.asarray = lambda a, dtype, device=None: np.array(a, dtype=dtype)
    backend.dtypes = ("float32", "float64")
    backend.tools.forbid_host_sync = forbid
    backend.synchronize = lambda x: done(backend)
    return backend


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(37, 1, 1), (101, 3, 5), (250, 2, 64)])
def test_conformance_fused_checks_pass_on_the_stand_in(emulated, dtype, shape):
    from conformance import test_backend as conf

    conf.test_fused_gradients(emulated, dtype, shape)
    conf.test_fused_steps(emulated, dtype, shape)


def test_conformance_extreme_logits_on_the_stand_in(emulated):
    from conformance import test_backend as conf

    with np.errstate(over="ignore"):
        conf.test_extreme_logits_are_finite(emulated, "float32", "fused")


@pytest.mark.parametrize(
    "name",
    [
        None,
        "drop the W2 scale of dW1",
        "a shuffle tree one level short",
        "only the first warp's sums",
    ],
)
def test_conformance_kernel_mutants_on_the_stand_in(emulated, name, monkeypatch):
    from conformance import test_mutations

    test_mutations.test_planted_kernel_bug_is_caught(emulated, name, monkeypatch)


@pytest.fixture
def bridged(backend, monkeypatch):
    """The stand-in as the cupy backend that torch/jax arrays reach through DLPack;
    ``shared`` records, for every array handed over, whether no copy was made."""
    from nnbin_backends.cuda import dlpack as bridge

    shared = []

    def from_dlpack(x):
        view = np.from_dlpack(x)
        source = x.data_ptr() if hasattr(x, "data_ptr") else x.unsafe_buffer_pointer()
        shared.append(view.ctypes.data == source)
        return view

    backend._cupy.from_dlpack = from_dlpack
    monkeypatch.setattr(bridge, "cupy_fused", lambda: backend._fused)
    return backend, shared


def test_torch_tensors_reach_the_fused_kernels_through_dlpack(bridged):
    torch = pytest.importorskip("torch")
    from nnbin_backends.cuda import dlpack as bridge
    from nnbin_backends.torch import TorchBackend

    _, shared = bridged
    tb = TorchBackend()
    # CPU tensors stand in for CUDA ones
    tb.runners.fused = bridge.DlpackFused(tb, torch.from_dlpack, lambda X: True)
    Xn, yn = nnbin.two_gaussians(n_per_class=100, seed=4)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    p0 = nnbin.init_params(1, 4, seed=4, backend="torch", dtype="float64")
    fused = run_loop(tb, p0, X, y, lr=1.0, steps=12, log_every=5)
    done(bridged[0])
    assert fused.loop.endswith("(through DLPack, no copies)")
    assert shared and all(shared)  # X, y and the parameters: views, never copies
    assert all(isinstance(p, torch.Tensor) and p.dtype == torch.float64 for p in fused.params)
    core = run_loop(tb, p0, X, y, lr=1.0, steps=12, log_every=5, fused=False)
    assert "DLPack" not in (core.loop or "")
    for a, b in zip(fused.params, core.params):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)
    assert [s for s, _ in fused.history] == [0, 5, 10]
    np.testing.assert_allclose(
        [v for _, v in fused.history], [v for _, v in core.history], rtol=1e-12
    )
    assert tb.runners.fused.refusal(p0, X) is None
    loss, grads = tb.runners.fused.loss_and_grads(p0, X, y)
    done(bridged[0])
    want_loss, want = nnbin.loss_and_grads(p0, X, y)
    assert isinstance(loss, torch.Tensor) and float(loss) == pytest.approx(float(want_loss))
    for a, b in zip(grads, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-14)


def test_jax_arrays_reach_the_fused_kernels_through_dlpack(bridged):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from nnbin_backends.cuda import dlpack as bridge
    from nnbin_backends.jax import JaxBackend

    _, shared = bridged
    jb = JaxBackend()
    # CPU arrays stand in for GPU ones
    jb.runners.fused = bridge.DlpackFused(jb, jnp.from_dlpack, lambda X: True)
    Xn, yn = nnbin.two_gaussians(n_per_class=100, seed=5)
    X, y = jnp.asarray(Xn, jnp.float32), jnp.asarray(yn, jnp.float32)
    p0 = nnbin.init_params(1, 4, seed=5, backend="jax", dtype="float32")
    fused = run_loop(jb, p0, X, y, lr=1.0, steps=12, log_every=5)
    done(bridged[0])
    assert fused.loop.endswith("(through DLPack, no copies)") and all(shared)
    assert all(isinstance(p, jax.Array) and p.dtype == jnp.float32 for p in fused.params)
    core = run_loop(jb, p0, X, y, lr=1.0, steps=12, log_every=5, fused=False)
    for a, b in zip(fused.params, core.params):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-5)


def test_fused_true_without_cuda_says_what_to_install():
    pytest.importorskip("torch")
    X, y = nnbin.two_gaussians(n_per_class=10, seed=0)
    # the backend's own run says why (before the redesign train() said only "has no fused
    # step"); a backend with no fused step at all says that
    with pytest.raises(nnbin.BackendUnavailableError, match=r"one CUDA GPU and cupy: pip install"):
        nnbin.train(X, y, steps=1, backend="torch", fused=True)
    with pytest.raises(nnbin.BackendUnavailableError, match="numpy backend has no fused step"):
        nnbin.train(X, y, steps=1, backend="numpy", fused=True)


def test_fast_math_is_asked_for_float32_only(backend):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    log = backend._cupy.cuda.log
    plain = run_loop(backend, p0, X, y, lr=1.0, steps=2, log_every=1, config=Config())
    assert ("compile --std=c++14", "host") in log and "fast_math" not in plain.loop
    fast_math = Config(fast_math=True)
    log.clear()
    run_loop(backend, p0, X, y, lr=1.0, steps=2, log_every=1, config=fast_math)  # float64: never
    assert not [e for e in log if "compile" in e[0]]  # the same kernels, cached
    X32, y32, p32 = (
        X.astype("float32"),
        y.astype("float32"),
        nnbin.init_params(1, 4, seed=0, dtype="float32"),
    )
    fast = run_loop(backend, p32, X32, y32, lr=1.0, steps=2, log_every=1, config=fast_math)
    assert ("compile --std=c++14 --use_fast_math", "host") in log
    assert fast.loop.endswith("; --use_fast_math")


def test_labels_and_parameters_of_another_float_type_are_read_as_x_s(backend):
    X, y = nnbin.two_gaussians(n_per_class=60, seed=6)
    p32 = nnbin.init_params(1, 4, seed=6, dtype="float32")
    run = run_loop(backend, p32, X.astype("float32"), y, lr=1.0, steps=3, log_every=1)  # y float64
    X32, y32 = X.astype("float32"), y.astype("float32")
    want = run_loop(backend, p32, X32, y32, lr=1.0, steps=3, log_every=1)
    done(backend)
    assert run.history == want.history
    assert all(
        a.dtype == np.float32 and a.tobytes() == b.tobytes()
        for a, b in zip(run.params, want.params)
    )


def test_conformance_synchronisation_check_on_the_stand_in(emulated, monkeypatch):
    """The suite's no-synchronisation check passes on the fused driver (the loss is read
    on logging steps only), and fails on a driver that reads it on every step."""
    from conformance import helpers
    from conformance import test_backend as conf

    small = helpers.random_case(emulated, "float32", 300, 1, 4, seed=0)
    monkeypatch.setattr(conf, "seed_case", lambda be, dtype: small)
    conf.test_no_host_synchronisation_between_logging_steps(emulated, "float32", "default")
    from nnbin_backends.cuda import driver

    steps = driver.fused_steps

    def eager_reader(be, params, X, y, lr, steps_, log_every, on_log, want_grads=False, **kw):
        return steps(be, params, X, y, lr, steps_, 1, None, want_grads, **kw)  # logs every step

    monkeypatch.setattr(driver, "fused_steps", eager_reader)
    with pytest.raises(RuntimeError, match="synchronization"):
        conf.test_no_host_synchronisation_between_logging_steps(emulated, "float32", "default")
