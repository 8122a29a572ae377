"""The fused CUDA step's driver: buffers, launch shape, streams, CUDA graphs, logging.

Used by the fused plug-in (``fused.py``: cupy's, and through DLPack torch's and jax's). One
step is two kernels (``fused_step.cu``, shaped by ``kernels.py``). A run:

- is ordered after the caller's work, and the caller after it, by CUDA events on a stream
  of the run's own, never by host waits;
- launches each logging step on its own (its loss is the run's only read to the host) and
  replays the steps between two logging steps as CUDA graphs of at most ``graph_steps``
  steps (the ``fused_graphs=False`` option, or ``NNBIN_CUDA_GRAPHS=0``: every step launched);
- keeps its buffers (two parameter sets used in turn, the per-block sums, the gradient) and
  its instantiated graphs in a **workspace** that later runs on the same data reuse: a
  graph holds the addresses it was captured with, so a workspace is keyed by everything
  those depend on (device, the addresses, shapes and strides of X and y, dtype, D, H, the
  step size, the grid and the kernels). The first H100 run showed the cost it removes:
  capturing and instantiating a graph in every run cost ~11 µs a step at N = 2e4 (30.0 µs
  a step measured against 18.7 µs of kernels). A workspace holds no reference to the
  caller's arrays, only their addresses: memory reused at the same address with the same
  shape is exactly what a fresh capture would read. A few workspaces are kept (least
  recently used dropped); one in use by another thread is not shared (a run then uses a
  fresh one of its own);
- hands back parameters, gradients and the loss each in an allocation of its own (never
  slices of one buffer: XLA requires aligned buffers, and a reused workspace must not
  change arrays already returned).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnbin.loop import Advanced, OnLog, Runner, RunResult, drive, segments
from nnbin.model import Params

from . import kernels as cuda_fused

MAX_WORKSPACES = 4  # kept per fused plug-in; each holds O(P x blocks) numbers, not O(N)

#: the parameters of the networks the fused step covers: sigmoid hidden units
Sigmoid = Params.of("sigmoid")


def address(a: Any) -> int:
    """The device address of a CuPy array's first element (``a.data.ptr``: no stream
    handshake, no synchronisation); a host address for the NumPy arrays of the CPU
    stand-in."""
    ptr = getattr(getattr(a, "data", None), "ptr", None)
    return int(ptr if ptr is not None else a.__array_interface__["data"][0])


@dataclass
class Workspace:
    bufs: tuple[Params, Params]
    partial: Any
    grad: Any
    loss: Any
    stream: Any
    graphs: dict[tuple[int, int], Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    captures: int = 0  # graphs captured in this workspace (what reuse saves)


class WorkspaceCache:
    """The least recently used workspaces of one backend, by key."""

    def __init__(self, size: int = MAX_WORKSPACES) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], Workspace] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: tuple[Any, ...], make: Callable[[], Workspace]) -> Workspace:
        """A workspace for ``key``, locked for the caller (release ``.lock`` when done):
        the cached one if it is free, else a new one (cached unless another is in use)."""
        with self._lock:
            ws = self._items.get(key)
            if ws is not None and ws.lock.acquire(blocking=False):
                self._items.move_to_end(key)
                return ws
            fresh = make()
            fresh.lock.acquire()
            if ws is None:
                self._items[key] = fresh
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return fresh

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def fused_steps(
    be: Any, params: Params, X: Any, y: Any, lr: float, steps: int, log_every: int,
    on_log: OnLog | None, want_grads: bool = False, *, graphs: bool = True, fast: bool = False,
) -> tuple[RunResult, Any]:  # fmt: skip
    """``steps`` fused steps of ``be`` (a CupyFused, the tests' over a CuPy stand-in) from
    ``params``; the loss and gradients of the last step too when ``want_grads``."""
    cp = be._cupy
    n, d = (int(v) for v in X.shape)
    h = int(params.W1.shape[1])
    dtype = str(X.dtype)
    partials, _ = be._kernels(d, h, dtype, fast)
    P = cuda_fused.n_partials(d, h)
    blocks = cuda_fused.partials_blocks(n, be._max_blocks(partials), be.block)
    y = cp.ascontiguousarray(y.reshape(-1), dtype=dtype)  # the kernels read X's type
    caller = cp.cuda.get_current_stream()
    key = (
        cp.cuda.runtime.getDevice(),
        address(X),
        tuple(X.shape),
        tuple(X.strides),
        address(y),
        int(y.shape[0]),
        dtype,
        h,
        float(lr),
        blocks,
        be.block,
        be._compile_options(fast),
    )

    def make() -> Workspace:
        first = Sigmoid(*(cp.empty(tuple(p.shape), dtype=dtype) for p in params))
        return Workspace(
            bufs=(first, Sigmoid(*(cp.empty_like(p) for p in first))),
            partial=cp.empty((P, blocks), dtype=dtype),
            grad=cp.empty((P - 1,), dtype=dtype),
            loss=cp.empty((1,), dtype=dtype),
            stream=cp.cuda.Stream(non_blocking=True),
        )

    ws = be._workspaces.take(key, make)
    try:
        runner = FusedSteps(
            be, ws, params, X, y, lr, caller, n, d, h, P, blocks, dtype, graphs, fast
        )
        try:
            result = drive(
                runner, lr=lr, steps=steps, log_every=log_every, on_log=on_log, initial=params
            )
            return result, runner.grads() if want_grads else None
        finally:
            runner.finish()
    finally:
        ws.lock.release()


class FusedSteps(Runner):
    """The fused step in the one loop (:mod:`nnbin.loop`): logged steps launched one by one,
    the plain steps between them replayed as CUDA graphs. Nothing here waits for the device
    except the transfer of a call's logged losses."""

    def __init__(
        self,
        be: Any,
        ws: Workspace,
        params: Params,
        X: Any,
        y: Any,
        lr: float,
        caller: Any,
        n: int,
        d: int,
        h: int,
        P: int,
        blocks: int,
        dtype: str,
        graphs: bool = True,
        fast: bool = False,
    ) -> None:
        cp = self.cp = be._cupy
        self.be, self.ws, self.X, self.y, self.caller = be, ws, X, y, caller
        self.partials, self.update = be._kernels(d, h, dtype, fast)
        self.P, self.blocks, self.dtype = P, blocks, dtype
        self.args = (be.block,), np.int64(n), np.int64(blocks), np.dtype(dtype).type(lr)
        self.use_graphs = graphs and hasattr(ws.stream, "begin_capture")
        # The caller's parameters are copied into the workspace on the caller's stream,
        # after whatever a previous run of this workspace still has queued; the run's
        # stream then waits for the copies. No host wait anywhere.
        caller.wait_event(ws.stream.record())
        for buf, p in zip(ws.bufs[0], params, strict=True):
            buf[...] = cp.asarray(p, dtype=dtype).reshape(buf.shape)
        ws.stream.wait_event(caller.record())
        self.cur = 0  # index of the buffer holding the current parameters
        self.params = ws.bufs[0]

    def _step(self, with_loss: bool) -> None:
        block, n64, blocks64, lr = self.args
        src, dst = self.ws.bufs[self.cur], self.ws.bufs[1 - self.cur]
        ws = self.ws
        self.partials(
            (self.blocks,), block, (self.X, self.y, *src, n64, np.int32(with_loss), ws.partial)
        )
        self.update((self.P,), block, (ws.partial, blocks64, n64, lr, *src, *dst, ws.grad, ws.loss))
        self.cur = 1 - self.cur
        self.params = ws.bufs[self.cur]

    def _replay(self, length: int) -> None:
        """``length`` plain steps as graph replays of at most ``graph_steps`` steps each.
        A graph is kept per length and parity; the loop asks for few lengths (a
        segment's plain steps, and calls of a power of two steps)."""
        ws, cap = self.ws, self.be.graph_steps
        pieces = [cap] * (length // cap) + ([length % cap] if length % cap else [])
        for k in pieces:
            key = (k, self.cur)
            if key not in ws.graphs:
                first = self.cur
                ws.stream.begin_capture()
                try:
                    for _ in range(k):
                        self._step(False)
                finally:
                    ws.graphs[key] = ws.stream.end_capture()
                    self.cur = first  # capturing ran nothing: the replay below does
                    self.params = ws.bufs[first]
                ws.captures += 1
            ws.graphs[key].launch(ws.stream)
            self.cur = (self.cur + k) % 2
            self.params = ws.bufs[self.cur]

    def plain(self, k: int) -> None:
        if self.use_graphs and k >= 2:
            self._replay(k)
        else:
            for _ in range(k):
                self._step(False)

    def advance(self, n: int, every: int) -> Advanced:
        def logged() -> Any:
            self._step(True)
            return self.ws.loss.copy()[0]

        def before() -> Params:  # the buffers are reused: a copy of the parameters
            return Sigmoid(*(p.copy() for p in self.params))

        with self.ws.stream:
            return segments(n, every, logged, self.plain, before)

    def result(self) -> Params:
        """The parameters in allocations of their own (the workspace is reused)."""
        with self.ws.stream:
            return Sigmoid(*(p.copy() for p in self.params))

    def grads(self) -> tuple[Any, Params]:
        """The loss and gradients of the last logged step, each an allocation of its own."""
        d, h = (int(v) for v in self.ws.bufs[0].W1.shape)
        dh, g = d * h, self.ws.grad
        with self.ws.stream:
            return self.ws.loss.reshape(()).copy(), Sigmoid(
                g[:dh].reshape(d, h).copy(),
                g[dh : dh + h].copy(),
                g[dh + h : dh + 2 * h].reshape(h, 1).copy(),
                g[dh + 2 * h : dh + 2 * h + 1].copy(),
            )

    def finish(self) -> None:
        """Order the caller's later work after everything this run queued."""
        self.caller.wait_event(self.ws.stream.record())
