"""The CUDA-graph path of the array-API core (backends/cuda/graphs.py), run on the CPU.

The stand-in for ``torch.cuda.CUDAGraph`` traces the captured function once with
``make_fx`` and replays the trace: like a stream capture it records the tensor operations
once and bakes in every Python value the step read (a step size held as a float, a shuffle
drawn at capture, Adam's step count kept on the host), so a replay that should have seen a
new value gives a wrong number, which these tests compare with the eager core bit for bit.
Static buffers, workspaces, recapture, logging and the loop are the real code's. What only
a GPU shows (the capture's own rules, streams, speed) is the GPU check's
(``python -m conformance.gpucheck``, the ``graphs`` jobs)."""

from __future__ import annotations

import numpy as np
import pytest

import nnbin

torch = pytest.importorskip("torch")
make_fx = pytest.importorskip("torch.fx.experimental.proxy_tensor").make_fx

from nnbin_backends import torch as torch_binding  # noqa: E402
from nnbin_backends.cuda import graphs as cuda_graphs  # noqa: E402
from nnbin_backends.torch import TorchRunners  # noqa: E402


class TracedGraphs(cuda_graphs.TorchGraphs):
    """``TorchGraphs`` with the capture a trace (see the module's docstring)."""

    name = "traced stand-in of CUDA graphs"

    def __init__(self) -> None:
        self.torch, self.captures, self.replays = torch, 0, 0

    def capture(self, fn, inputs, outputs):
        trace = make_fx(fn)(*inputs)
        self.captures += 1

        def replay():
            self.replays += 1
            for out, value in zip(outputs, trace(*inputs)):
                out.copy_(value)

        return replay


@pytest.fixture
def graphed(monkeypatch):
    """The torch backend with the CUDA-graph path applying to CPU tensors, on the stand-in;
    yields the stand-in (its counts)."""
    be = nnbin.get_backend("torch")
    stand_in = TracedGraphs()
    monkeypatch.setattr(torch_binding, "_on_gpu", lambda X: True)  # CPU tensors stand in
    monkeypatch.setattr(be.runners, "_graphs", stand_in)
    monkeypatch.setattr(be.runners, "graph_workspaces", type(be.runners.graph_workspaces)())
    return stand_in


def _data(n=300, d=3, seed=1):
    X, y = nnbin.two_gaussians(n_per_class=n // 2, seed=seed, n_features=d, mean=1.0)
    return torch.as_tensor(X), torch.as_tensor(y)


# fmt: off
RUNS = {
    "seed network, full batch": dict(steps=40, log_every=7),
    "adam, shuffled mini-batches, early stopping": dict(
        hidden=(8, 4), activation="relu", optimizer="adam", batch_size=64, steps=12, lr=0.01,
        early_stopping=True, n_iter_no_change=3),
    "nesterov, invscaling, L2": dict(
        hidden=6, activation="tanh", optimizer="momentum", nesterov=True, batch_size=50,
        steps=9, lr=0.2, learning_rate="invscaling", alpha=0.01),
    "momentum, adaptive": dict(
        hidden=5, optimizer="momentum", batch_size=40, steps=30, lr=0.5,
        learning_rate="adaptive", n_iter_no_change=2, tol=0.05),
    "batches in order, 20 steps a call": dict(
        hidden=(4, 4), optimizer="adam", batch_size=32, shuffle=False, steps=40, lr=0.05,
        log_every=3, steps_per_call=20),
    "no hidden layer": dict(hidden=(), steps=25, log_every=5),
}
# fmt: on


def _same(a, b):
    """Two results the same to the bit: parameters, history, final loss, epochs, scores."""
    for p, q in zip(a.params, b.params, strict=True):
        assert torch.equal(p, q)
    assert a.history == b.history and a.final_loss == b.final_loss
    assert a.n_iter == b.n_iter and a.validation_scores == b.validation_scores
    for p, q in zip(_flat(a.optimizer_state), _flat(b.optimizer_state), strict=True):
        assert torch.equal(p, q)


def _flat(tree):
    return cuda_graphs.leaves(tree) if isinstance(tree, tuple) else [tree]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(RUNS))
def test_graph_runs_equal_the_eager_core(graphed, name, dtype):
    """Each run replayed as graphs equals the eager core's bit for bit (the same
    operations, on static buffers), and says which path ran."""
    X, y = _data()
    X, y = X.to(getattr(torch, dtype)), y.to(getattr(torch, dtype))
    w = None
    if name.startswith("adam"):  # weighted too: the weights are data the graph reads
        w = torch.as_tensor(np.random.default_rng(3).integers(0, 4, X.shape[0]).astype(dtype))
    eager = nnbin.train(X, y, sample_weight=w, **RUNS[name])
    graph = nnbin.train(X, y, sample_weight=w, cuda_graphs=True, **RUNS[name])
    _same(graph, eager)
    assert graph.loop.startswith("traced stand-in of CUDA graphs of the array-API core")
    assert graphed.captures >= 1 and graphed.replays >= RUNS[name]["steps"] // 16


def test_a_step_size_held_as_a_float_would_be_caught(graphed, monkeypatch):
    """Planted: the step size set as a Python float (the eager core's way): the capture
    bakes the first epoch's, and the invscaling run no longer equals the eager one."""
    from nnbin.loop import OnRun

    monkeypatch.setattr(cuda_graphs.GraphRunner, "set_lr", OnRun.set_lr)
    with pytest.raises(AssertionError):
        test_graph_runs_equal_the_eager_core(graphed, "nesterov, invscaling, L2", "float64")


def test_a_shuffle_drawn_at_capture_would_be_caught(graphed, monkeypatch):
    """Planted: the order buffer never filled before a replay (every epoch the order the
    buffer had): the shuffled run no longer equals the eager one."""
    monkeypatch.setattr(cuda_graphs.GraphRunner, "_replay", _replay_without_order)
    with pytest.raises(AssertionError):
        test_graph_runs_equal_the_eager_core(
            graphed, "adam, shuffled mini-batches, early stopping", "float64"
        )


def _replay_without_order(self, epochs, logged):
    self.run.order()  # drawn, as the real one, but not put into the buffer
    self._graph(epochs, logged)()


def test_workspaces_are_reused_across_runs_and_captured_anew_for_new_shapes(graphed):
    X, y = _data()
    run = dict(hidden=5, optimizer="adam", batch_size=50, steps=6, lr=0.02, log_every=2)
    first = nnbin.train(X, y, seed=1, **run, cuda_graphs=True)
    kept = [p.clone() for p in first.params]
    captured = graphed.captures
    second = nnbin.train(X, y, seed=2, **run, cuda_graphs=True)  # another seed: reused
    assert graphed.captures == captured
    for p, q in zip(first.params, kept):  # the first run's results are its own arrays
        assert torch.equal(p, q)
    _same(second, nnbin.train(X, y, seed=2, **run))
    third = nnbin.train(X, y, seed=2, **{**run, "lr": 0.5}, cuda_graphs=True)  # a new lr
    assert graphed.captures == captured
    _same(third, nnbin.train(X, y, seed=2, **{**run, "lr": 0.5}))
    Xs, ys = _data(n=200)  # a new shape: captured anew
    nnbin.train(Xs, ys, **run, cuda_graphs=True)
    assert graphed.captures > captured
    assert len(nnbin.get_backend("torch").runners.graph_workspaces) == 2


def test_nothing_is_read_to_the_host_between_logged_steps(graphed, monkeypatch):
    """A call replays its graphs, then reads its logged losses once: no tensor becomes a
    Python number while a graph replays or between two replays."""
    X, y = _data()
    events = []
    real_float = torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: events.append("read") or real_float(t))
    real_capture = graphed.capture

    def capture(fn, inputs, outputs):
        replay = real_capture(fn, inputs, outputs)
        return lambda: events.append("replay") or replay()

    monkeypatch.setattr(graphed, "capture", capture)
    result = nnbin.train(X, y, steps=80, log_every=20, steps_per_call=80, cuda_graphs=True)
    # one call: 4 segments of a logged step, then 19 plain ones as one graph of CHUNK steps
    # and single steps; the four losses read after the last replay, then the final loss
    plain = 19 // cuda_graphs.CHUNK + 19 % cuda_graphs.CHUNK
    assert events == ["replay"] * (4 * (1 + plain)) + ["read"] * 5
    assert len(result.history) == 4


def test_ctrl_c_in_a_run_leaves_the_next_run_right(graphed):
    X, y = _data()
    run = dict(hidden=4, optimizer="momentum", batch_size=60, steps=20, lr=0.1, log_every=1)

    def interrupt(step, loss):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nnbin.train(X, y, on_log=interrupt, cuda_graphs=True, **run)
    _same(nnbin.train(X, y, cuda_graphs=True, **run), nnbin.train(X, y, **run))


def test_graphs_where_none_apply_are_one_clear_error():
    X, y = _data(n=40)
    with pytest.raises(nnbin.BackendUnavailableError, match="not on a CUDA device"):
        nnbin.train(X, y, steps=2, cuda_graphs=True)
    with pytest.raises(nnbin.BackendUnavailableError, match="numpy backend has no CUDA-graph"):
        nnbin.train(X.numpy(), y.numpy(), steps=2, cuda_graphs=True)
    with pytest.raises(nnbin.InvalidInputError, match="cuda_graphs"):
        nnbin.train(X, y, steps=2, optimizer="lbfgs", cuda_graphs=True)


def test_the_default_is_eager_and_says_so_on_cuda_and_the_variable_turns_graphs_on(
    graphed, monkeypatch
):
    X, y = _data(n=60)
    run = dict(hidden=3, steps=4, log_every=2)
    default = nnbin.train(X, y, **run).loop
    assert default.endswith("; CUDA graphs of it off until verified on a GPU (cuda_graphs=True)")
    monkeypatch.setenv("NNBIN_CORE_GRAPHS", "1")
    on = nnbin.train(X, y, **run)
    assert on.loop.startswith("traced stand-in") and graphed.captures
    assert "CUDA graphs" not in nnbin.train(X, y, cuda_graphs=False, **run).loop


def test_a_capture_the_library_refuses_is_one_clear_error(graphed, monkeypatch):
    """A library error inside a capture (an operation the stream capture does not allow)
    becomes one error that names it and says what to do; the workspace is free for the
    next run, which replays as graphs."""
    X, y = _data(n=60)
    real = graphed.capture

    def refused(fn, inputs, outputs):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore")

    monkeypatch.setattr(graphed, "capture", refused)
    with pytest.raises(nnbin.BackendUnavailableError) as info:
        nnbin.train(X, y, steps=3, cuda_graphs=True)
    assert str(info.value) == (
        "traced stand-in of CUDA graphs could not capture the core's step (RuntimeError: CUDA"
        " error: operation not permitted when stream is capturing); cuda_graphs=False trains"
        " with the eager core"
    )
    monkeypatch.setattr(graphed, "capture", real)
    _same(nnbin.train(X, y, steps=3, cuda_graphs=True), nnbin.train(X, y, steps=3))


def test_a_later_run_of_plain_steps_captures_nothing(graphed):
    """A capture waits for the device (torch's synchronises), which the conformance
    suite's no-synchronisation check on a GPU would catch: both plain graphs are captured
    on their first use, so a later run of any number of plain steps captures nothing."""
    X, y = _data()
    nnbin.train(X, y, steps=3, log_every=0, cuda_graphs=True)
    captured = graphed.captures
    assert captured == 2  # one step, and CHUNK steps
    nnbin.train(X, y, steps=3 * cuda_graphs.CHUNK + 5, log_every=0, cuda_graphs=True)
    assert graphed.captures == captured


def test_the_estimator_takes_the_graphs(graphed):
    """BinaryMLPClassifier(cuda_graphs=True): its defaults (ReLU, Adam, shuffled batches of
    200) replayed as graphs, equal to its eager fit."""
    sklearn = pytest.importorskip("sklearn")
    X, y = _data(n=400)
    kw = dict(hidden_layer_sizes=(8,), max_iter=4, random_state=0)
    with sklearn.config_context(array_api_dispatch=True):  # torch in, torch out
        eager = nnbin.BinaryMLPClassifier(**kw).fit(X, y.ravel())
        graph = nnbin.BinaryMLPClassifier(**kw, cuda_graphs=True).fit(X, y.ravel())
    assert graph.loop_.startswith("traced stand-in") and graphed.captures
    assert graph.loss_curve_ == eager.loss_curve_
    for p, q in zip(graph.params_, eager.params_, strict=True):
        assert torch.equal(p, q)


class _MmGemm:
    """A stand-in for ``gemm.Gemm`` (CuPy's capture-safe products): ``aten.mm`` itself, the
    product an eager 2-D ``@`` takes, so results stay comparable bit for bit; counted."""

    def __init__(self) -> None:
        self.calls = 0

    def applies(self, a, b) -> bool:
        return a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype

    def __call__(self, a, b):
        self.calls += 1
        return torch.ops.aten.mm(a, b)


@pytest.fixture
def products_refused(graphed, monkeypatch):
    """The cupy path's rule on the stand-in: inside a capture, ``@``, ``torch.matmul`` and
    ``torch.tensordot`` raise (CuPy's capture refuses cuBLAS), so every product of a
    captured step must come through the run's ``core_xp``: a ``CaptureSafe`` namespace,
    as cupy's ``graph_runner`` sets it. Yields the stand-in product (its count)."""
    from nnbin_backends.cuda.gemm import CaptureSafe

    gemm = _MmGemm()

    def refused(*args, **kwargs):
        raise RuntimeError("a matrix product outside core_xp inside a capture (cuBLAS)")

    real_capture = graphed.capture

    def capture(fn, inputs, outputs):
        with monkeypatch.context() as inside:
            for owner, name in ((torch.Tensor, "__matmul__"), (torch, "matmul"),
                                (torch, "tensordot"), (torch, "mm")):  # fmt: skip
                inside.setattr(owner, name, refused)
            return real_capture(fn, inputs, outputs)

    monkeypatch.setattr(graphed, "capture", capture)
    torch_own = TorchRunners.graphs

    def safe(self, X):  # cupy's way: the run computes in a capture-safe namespace
        factory = torch_own(self, X)

        def runner(run):
            run.core_xp = CaptureSafe(run.xp, gemm)
            return factory(run)

        return runner

    monkeypatch.setattr(TorchRunners, "graphs", safe)
    gemm.torch_own = torch_own
    return gemm


@pytest.mark.parametrize("name", list(RUNS))
def test_every_product_of_a_captured_step_goes_through_core_xp(products_refused, name):
    """Each run captured with matrix products refused but through the run's
    capture-safe namespace (cupy's way): no product escapes it, and the run equals the
    eager core's bit for bit."""
    X, y = _data()
    eager = nnbin.train(X, y, **RUNS[name])
    graph = nnbin.train(X, y, cuda_graphs=True, **RUNS[name])
    _same(graph, eager)
    assert products_refused.calls > 0


def test_a_product_outside_core_xp_would_be_caught(products_refused, monkeypatch):
    """Planted: the run computing in the arrays' own namespace (no ``core_xp``): the
    capture meets a product it refuses."""
    monkeypatch.setattr(TorchRunners, "graphs", products_refused.torch_own)
    X, y = _data(n=60)
    with pytest.raises(RuntimeError, match="outside core_xp"):
        nnbin.train(X, y, steps=3, hidden=(4, 3), cuda_graphs=True)
