"""The cupy backend's fused-step driver (buffers, launch shapes, scalar types, streams,
CUDA-graph capture and replay, logging, divergence), run on the CPU: a stand-in for cupy
whose RawModule compiles the same kernel text as C++ and runs each launch under the SIMT
emulator (tests/cuda_emulation.py), with NumPy arrays as device memory, and whose streams
record what a capture would put in a graph. What only a GPU can show (CUDA semantics,
speed) is not shown."""

from __future__ import annotations

import types

import numpy as np
import pytest
from cuda_emulation import Kernel, compile_kernels

import nnbin
from nnbin.training import python_loop


class FakeCuda:
    """cupy.cuda as far as the driver uses it: streams, events, capture, graphs, devices."""

    def __init__(self) -> None:
        self.null = FakeStream(self, "null")
        self.current = self.null
        self.capturing: FakeStream | None = None
        self.log: list[tuple[str, str]] = []  # (event, stream) in the order they happen
        self.runtime = types.SimpleNamespace(getDevice=lambda: 0,
                                             memGetInfo=lambda: (80 << 30, 80 << 30))

    def Stream(self, non_blocking=False):  # noqa: N802 - cupy's spelling
        assert non_blocking, "a blocking stream would serialise with the null stream"
        return FakeStream(self, f"stream{len(self.log)}")

    def get_current_stream(self):
        return self.current

    def Device(self):  # noqa: N802
        return types.SimpleNamespace(attributes={
            "MultiProcessorCount": 2, "MaxThreadsPerMultiProcessor": 2048,
            "MaxRegistersPerMultiprocessor": 65536})


class FakeStream:
    def __init__(self, cuda: FakeCuda, name: str) -> None:
        self.cuda, self.name, self.recorded = cuda, name, None

    def __enter__(self):
        self.previous, self.cuda.current = self.cuda.current, self
        return self

    def __exit__(self, *exc):
        self.cuda.current = self.previous

    def record(self):
        self.cuda.log.append(("record", self.name))
        return ("event", self.name)

    def wait_event(self, event):
        self.cuda.log.append((f"wait for {event[1]}", self.name))

    def begin_capture(self):
        assert self.cuda.capturing is None and self.name != "null"
        self.cuda.capturing, self.recorded = self, []
        self.cuda.log.append(("begin capture", self.name))

    def end_capture(self):
        assert self.cuda.capturing is self
        self.cuda.capturing = None
        self.cuda.log.append(("end capture", self.name))
        return FakeGraph(self.cuda, self.recorded)


class FakeGraph:
    def __init__(self, cuda: FakeCuda, launches) -> None:
        self.cuda, self.launches = cuda, launches

    def launch(self, stream):
        assert self.cuda.capturing is None
        self.cuda.log.append((f"graph of {len(self.launches)} launches", stream.name))
        for kernel, args in self.launches:
            kernel.run(*args)


class FakeKernel:
    """Runs at once on the current stream, or is recorded while that stream captures."""

    def __init__(self, cuda: FakeCuda, kernel: Kernel) -> None:
        self.cuda, self.kernel = cuda, kernel

    def __call__(self, grid, block, args):
        stream = self.cuda.current
        assert stream.name != "null", "fused kernels run on the backend's own stream"
        if self.cuda.capturing is stream:
            stream.recorded.append((self, (grid, block, args)))
        else:
            self.cuda.log.append((self.kernel.name, stream.name))
            self.run(grid, block, args)

    def run(self, grid, block, args):
        self.kernel(grid, block, args)


class DeviceArray(np.ndarray):
    """Device memory in the stand-in: reading an element to the host is a synchronisation,
    which raises while ``forbidden`` is set (as cupyx.allow_synchronize(False) does)."""

    forbidden = False

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if DeviceArray.forbidden and not isinstance(out, np.ndarray):
            raise RuntimeError("device synchronization was detected while disallowed")
        return out


def fake_cupy(tmp_path):
    cuda = FakeCuda()

    def empty(shape, dtype=float):
        return np.empty(shape, dtype).view(DeviceArray)

    def raw_module(code, options=()):
        cuda.log.append((f"compile {' '.join(options)}", "host"))
        lib = compile_kernels(code, tmp_path / str(abs(hash(code))))
        return types.SimpleNamespace(
            get_function=lambda name: FakeKernel(cuda, Kernel(lib, name)))

    return types.SimpleNamespace(
        cuda=cuda, RawModule=raw_module, empty=empty, empty_like=np.empty_like,
        ascontiguousarray=np.ascontiguousarray,
        array=lambda a, dtype=None, copy=True, order="C": np.array(a, dtype=dtype, copy=copy,
                                                                  order=order))


@pytest.fixture
def backend(tmp_path):
    from nnbin_backends.cupy import CupyBackend

    be = object.__new__(CupyBackend)  # no GPU here: skip __init__'s device check
    be._cupy = fake_cupy(tmp_path)
    be._modules = {}
    be.xp = nnbin.get_backend("numpy").xp
    be.block, be.cuda_graphs, be.graph_steps = 64, True, 500  # 64 threads: quick to emulate
    be.fast_math, be.has_fused = False, True
    return be


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_training_matches_the_core(backend, dtype):
    X, y = nnbin.two_gaussians(n_per_class=300, seed=0)
    X, y = X.astype(dtype), y.astype(dtype)
    p0 = nnbin.init_params(1, 8, seed=2, dtype=dtype)
    before = [p.copy() for p in p0]
    fused = backend.run(p0, X, y, lr=1.0, steps=25, log_every=10)
    core = python_loop(p0, X, y, lr=1.0, steps=25, log_every=10)
    assert fused.loop.startswith("fused CUDA step")
    assert [s for s, _ in fused.history] == [0, 10, 20]
    tol = 1e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose([v for _, v in fused.history], [v for _, v in core.history],
                               rtol=tol)
    for a, b in zip(fused.params, core.params):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    for a, b in zip(p0, before):  # the caller's parameters are never written
        np.testing.assert_array_equal(a, b)
    again = backend.run(p0, X, y, lr=1.0, steps=25, log_every=10)
    for a, b in zip(fused.params, again.params):
        assert a.tobytes() == b.tobytes()


def test_fused_false_runs_the_core_and_limits_fall_back(backend):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    assert backend.run(p0, X, y, lr=1.0, steps=2, log_every=1, fused=False).loop \
        .startswith("python loop")
    wide = nnbin.init_params(1, 300, seed=0)
    assert backend.run(wide, X, y, lr=1.0, steps=1, log_every=1).loop.startswith("python")
    with pytest.raises(nnbin.BackendUnavailableError, match="no fused step"):
        backend.run(wide, X, y, lr=1.0, steps=1, log_every=1, fused=True)


def test_fused_divergence_keeps_a_copy_of_the_last_finite_parameters(backend):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    with pytest.raises(nnbin.TrainingDivergedError) as info, np.errstate(all="ignore"):
        backend.run(p0, X, y, lr=1e308, steps=6, log_every=1)
    err = info.value
    assert err.step == 1 and err.last_finite_step == 0
    for a, b in zip(err.params, p0):
        np.testing.assert_array_equal(a, b)


def test_fused_loss_and_grads_match_the_core(backend):
    X, y = nnbin.two_gaussians(n_per_class=40, seed=1, n_features=3)
    p0 = nnbin.init_params(3, 5, seed=1)
    loss, grads = backend.fused_loss_and_grads(p0, X, y)
    want_loss, want = nnbin.loss_and_grads(p0, X, y)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-12)
    for a, b in zip(grads, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("steps,log_every,graph_steps", [
    (25, 10, 500),  # the seed job's shape: a logging step, then a 9-step graph, ...
    (11, 0, 4),     # no logging: graphs of at most 4 steps, replayed
    (11, 0, 3),     # odd graphs back to back: 3, 3, 3, 2 steps
    (10, 4, 500),   # odd-length graphs (parity of the two buffers), a 1-step tail
    (3, 1, 500),    # every step logged: no graph at all
])
def test_graph_replay_gives_the_same_bits_as_launching_every_step(backend, steps, log_every,
                                                                   graph_steps):
    X, y = nnbin.two_gaussians(n_per_class=150, seed=3)
    p0 = nnbin.init_params(1, 4, seed=3)
    backend.graph_steps = graph_steps
    cuda = backend._cupy.cuda
    graphed = backend.run(p0, X, y, lr=1.0, steps=steps, log_every=log_every)
    log = list(cuda.log)
    backend.cuda_graphs = False
    cuda.log.clear()
    eager = backend.run(p0, X, y, lr=1.0, steps=steps, log_every=log_every)
    assert "CUDA-graph" in graphed.loop and "CUDA-graph" not in eager.loop
    assert graphed.history == eager.history
    for a, b in zip(graphed.params, eager.params):
        assert a.tobytes() == b.tobytes()
    # every step ran exactly once: two kernels a step, launched or inside a graph replay
    ran = sum(2 for what, _ in log if what == "nnbin_partials") + sum(
        int(what.split()[2]) for what, _ in log if what.startswith("graph of"))
    assert ran == 2 * steps
    replays = [what for what, _ in log if what.startswith("graph of")]
    if log_every == 1:
        assert replays == []
    assert all(int(r.split()[2]) <= 2 * graph_steps for r in replays)
    # ordered after the caller's work, and the caller after it, by events, not host waits
    log = [e for e in log if e[1] != "host"]  # compilations
    stream = log[1][1]
    assert log[:2] == [("record", "null"), ("wait for null", stream)] and stream != "null"
    assert log[-2:] == [("record", stream), (f"wait for {stream}", "null")]
    captures = [e for e in log if e[0] == "begin capture"]
    assert len(captures) <= 2 * 2  # at most one graph per length and parity


def test_a_graph_is_captured_once_and_replayed(backend):
    X, y = nnbin.two_gaussians(n_per_class=100, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    backend.run(p0, X, y, lr=1.0, steps=41, log_every=10)
    log = backend._cupy.cuda.log
    assert [e[0] for e in log].count("begin capture") == 1  # steps 1-9, 11-19, ... alike
    assert [e[0] for e in log].count("graph of 18 launches") == 4
    assert [e[0] for e in log].count("nnbin_partials") == 5  # the logging steps


def test_local_memory_too_big_for_the_gpu_falls_back_to_the_core(backend, monkeypatch):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    big = types.SimpleNamespace(local_size_bytes=200_000)  # x 2048 threads x 2 SMs: 819 MB
    monkeypatch.setattr(backend, "_kernels", lambda d, h, dtype: (big, big))
    assert backend.fused_applies(p0, X)  # half of 80 GiB free: fits
    backend._cupy.cuda.runtime.memGetInfo = lambda: (1 << 30, 80 << 30)
    assert not backend.fused_applies(p0, X)
    assert backend.run(p0, X, y, lr=1.0, steps=1, log_every=1).loop.startswith("python")


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
    backend.to_host = np.asarray
    backend.asarray = lambda a, dtype, device=None: np.array(a, dtype=dtype)
    backend.dtypes = ("float32", "float64")
    backend.forbid_host_sync = forbid
    backend.synchronize = lambda x: None
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


@pytest.mark.parametrize("name", [None, "drop the W2 scale of dW1",
                                  "a shuffle tree one level short",
                                  "only the first warp's sums"])
def test_conformance_kernel_mutants_on_the_stand_in(emulated, name, monkeypatch):
    from conformance import test_mutations

    test_mutations.test_planted_kernel_bug_is_caught(emulated, name, monkeypatch)


@pytest.fixture
def bridged(backend, monkeypatch):
    """The stand-in as the cupy backend that torch/jax arrays reach through DLPack;
    ``shared`` records, for every array handed over, whether no copy was made."""
    from nnbin_backends import cupy as cupy_module

    shared = []

    def from_dlpack(x):
        view = np.from_dlpack(x)
        source = x.data_ptr() if hasattr(x, "data_ptr") else x.unsafe_buffer_pointer()
        shared.append(view.ctypes.data == source)
        return view

    backend._cupy.from_dlpack = from_dlpack
    monkeypatch.setattr(cupy_module.DlpackFused, "cupy_backend", staticmethod(lambda: backend))
    return backend, shared


def test_torch_tensors_reach_the_fused_kernels_through_dlpack(bridged):
    torch = pytest.importorskip("torch")
    from nnbin_backends import cupy as cupy_module
    from nnbin_backends.torch import TorchBackend

    _, shared = bridged
    tb = TorchBackend()
    tb._on_gpu = lambda X: True  # CPU tensors stand in for CUDA ones
    tb._dlpack, tb.has_fused = cupy_module.DlpackFused(torch.from_dlpack), True
    Xn, yn = nnbin.two_gaussians(n_per_class=100, seed=4)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    p0 = nnbin.init_params(1, 4, seed=4, backend="torch", dtype="float64")
    fused = tb.run(p0, X, y, lr=1.0, steps=12, log_every=5)
    assert fused.loop.endswith("(through DLPack, no copies)")
    assert shared and all(shared)  # X, y and the parameters: views, never copies
    assert all(isinstance(p, torch.Tensor) and p.dtype == torch.float64 for p in fused.params)
    core = tb.run(p0, X, y, lr=1.0, steps=12, log_every=5, fused=False)
    assert "DLPack" not in (core.loop or "")
    for a, b in zip(fused.params, core.params):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)
    assert [s for s, _ in fused.history] == [0, 5, 10]
    np.testing.assert_allclose([v for _, v in fused.history], [v for _, v in core.history],
                               rtol=1e-12)
    assert tb.fused_applies(p0, X)
    loss, grads = tb.fused_loss_and_grads(p0, X, y)
    want_loss, want = nnbin.loss_and_grads(p0, X, y)
    assert isinstance(loss, torch.Tensor) and float(loss) == pytest.approx(float(want_loss))
    for a, b in zip(grads, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-14)


def test_jax_arrays_reach_the_fused_kernels_through_dlpack(bridged):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from nnbin_backends import cupy as cupy_module
    from nnbin_backends.jax import JaxBackend

    _, shared = bridged
    jb = JaxBackend()
    jb._on_gpu = lambda X: True  # CPU arrays stand in for GPU ones
    jb._dlpack, jb.has_fused = cupy_module.DlpackFused(jnp.from_dlpack), True
    Xn, yn = nnbin.two_gaussians(n_per_class=100, seed=5)
    X, y = jnp.asarray(Xn, jnp.float32), jnp.asarray(yn, jnp.float32)
    p0 = nnbin.init_params(1, 4, seed=5, backend="jax", dtype="float32")
    fused = jb.run(p0, X, y, lr=1.0, steps=12, log_every=5)
    assert fused.loop.endswith("(through DLPack, no copies)") and all(shared)
    assert all(isinstance(p, jax.Array) and p.dtype == jnp.float32 for p in fused.params)
    core = jb.run(p0, X, y, lr=1.0, steps=12, log_every=5, fused=False)
    for a, b in zip(fused.params, core.params):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-5)


def test_fused_true_without_cuda_says_what_to_install():
    pytest.importorskip("torch")
    X, y = nnbin.two_gaussians(n_per_class=10, seed=0)
    with pytest.raises(nnbin.BackendUnavailableError, match="has no fused step"):
        nnbin.train(X, y, steps=1, backend="torch", fused=True)


def test_fast_math_is_asked_for_float32_only(backend):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    p0 = nnbin.init_params(1, 4, seed=0)
    log = backend._cupy.cuda.log
    plain = backend.run(p0, X, y, lr=1.0, steps=2, log_every=1)
    assert ("compile --std=c++14", "host") in log and "fast_math" not in plain.loop
    backend.fast_math = True
    log.clear()
    backend.run(p0, X, y, lr=1.0, steps=2, log_every=1)  # float64: never approximate
    assert not [e for e in log if "compile" in e[0]]  # the same kernels, cached
    X32, y32, p32 = X.astype("float32"), y.astype("float32"), nnbin.init_params(
        1, 4, seed=0, dtype="float32")
    fast = backend.run(p32, X32, y32, lr=1.0, steps=2, log_every=1)
    assert ("compile --std=c++14 --use_fast_math", "host") in log
    assert fast.loop.endswith("; --use_fast_math")


def test_labels_and_parameters_of_another_float_type_are_read_as_x_s(backend):
    X, y = nnbin.two_gaussians(n_per_class=60, seed=6)
    p32 = nnbin.init_params(1, 4, seed=6, dtype="float32")
    run = backend.run(p32, X.astype("float32"), y, lr=1.0, steps=3, log_every=1)  # y float64
    want = backend.run(p32, X.astype("float32"), y.astype("float32"), lr=1.0, steps=3,
                       log_every=1)
    assert run.history == want.history
    assert all(a.dtype == np.float32 and a.tobytes() == b.tobytes()
               for a, b in zip(run.params, want.params))


def test_conformance_synchronisation_check_on_the_stand_in(emulated, monkeypatch):
    """The suite's no-synchronisation check passes on the fused driver (the loss is read
    on logging steps only), and fails on a driver that reads it on every step."""
    from conformance import helpers
    from conformance import test_backend as conf

    small = helpers.random_case(emulated, "float32", 300, 1, 4, seed=0)
    monkeypatch.setattr(conf, "seed_case", lambda be, dtype: small)
    conf.test_no_host_synchronisation_between_logging_steps(emulated, "float32", "default")
    steps = type(emulated)._fused_steps

    def eager_reader(self, params, X, y, lr, steps_, log_every, on_log, want_grads=False):
        return steps(self, params, X, y, lr, steps_, 1, None, want_grads)  # logs every step

    monkeypatch.setattr(type(emulated), "_fused_steps", eager_reader)
    with pytest.raises(RuntimeError, match="synchronization"):
        conf.test_no_host_synchronisation_between_logging_steps(emulated, "float32",
                                                                "default")
