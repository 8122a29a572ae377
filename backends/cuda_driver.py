"""The fused CUDA step's driver: buffers, launch shape, streams, CUDA graphs, logging.

Used by the cupy backend (``backends/cupy.py``) and, through DLPack, by torch and jax. One
step is two kernels (``backends/cuda_fused.py``). A run:

- is ordered after the caller's work, and the caller after it, by CUDA events on a stream
  of the run's own, never by host waits;
- launches each logging step on its own (its loss is the run's only read to the host) and
  replays the steps between two logging steps as CUDA graphs of at most ``graph_steps``
  steps (``NNBIN_CUDA_GRAPHS=0``: every step launched);
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

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnbin.model import Params
from nnbin.training import RunResult, diverged

from . import cuda_fused

MAX_WORKSPACES = 4  # kept per backend; each holds O(P x blocks) numbers, not O(N)


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


def fused_steps(be: Any, params: Params, X: Any, y: Any, lr: float, steps: int,
                log_every: int, on_log: Callable[[int, float], None] | None,
                want_grads: bool = False) -> tuple[RunResult, Any]:
    """``steps`` fused steps of ``be`` (a CupyBackend, or the stand-in in the tests) from
    ``params``; the loss and gradients of the last step too when ``want_grads``."""
    cp = be._cupy
    n, d = (int(v) for v in X.shape)
    h = int(params.W1.shape[1])
    dtype = str(X.dtype)
    partials, _ = be._kernels(d, h, dtype)
    P = cuda_fused.n_partials(d, h)
    blocks = cuda_fused.partials_blocks(n, be._max_blocks(partials), be.block)
    y = cp.ascontiguousarray(y.reshape(-1), dtype=dtype)  # the kernels read X's type
    caller = cp.cuda.get_current_stream()
    key = (cp.cuda.runtime.getDevice(), address(X), tuple(X.shape), tuple(X.strides),
           address(y), int(y.shape[0]), dtype, h, float(lr), blocks, be.block,
           be._compile_options(dtype))

    def make() -> Workspace:
        first = Params(*(cp.empty(tuple(p.shape), dtype=dtype) for p in params))
        return Workspace(bufs=(first, Params(*(cp.empty_like(p) for p in first))),
                         partial=cp.empty((P, blocks), dtype=dtype),
                         grad=cp.empty((P - 1,), dtype=dtype),
                         loss=cp.empty((1,), dtype=dtype),
                         stream=cp.cuda.Stream(non_blocking=True))

    ws = be._workspaces.take(key, make)
    try:
        return _run(be, ws, params, X, y, lr, steps, log_every, on_log, want_grads,
                    caller, n, d, h, P, blocks, dtype)
    finally:
        ws.lock.release()


def _run(be: Any, ws: Workspace, params: Params, X: Any, y: Any, lr: float, steps: int,
         log_every: int, on_log: Callable[[int, float], None] | None, want_grads: bool,
         caller: Any, n: int, d: int, h: int, P: int, blocks: int, dtype: str
         ) -> tuple[RunResult, Any]:
    cp = be._cupy
    partials, update = be._kernels(d, h, dtype)
    stream, bufs, partial, grad, loss = ws.stream, ws.bufs, ws.partial, ws.grad, ws.loss
    # The caller's parameters are copied into the workspace on the caller's stream, after
    # whatever a previous run of this workspace still has queued; the run's stream then
    # waits for the copies. No host wait anywhere.
    caller.wait_event(stream.record())
    for buf, p in zip(bufs[0], params, strict=True):
        buf[...] = cp.asarray(p, dtype=dtype).reshape(buf.shape)
    stream.wait_event(caller.record())
    block, n64, blocks64 = (be.block,), np.int64(n), np.int64(blocks)
    lr_ = np.dtype(dtype).type(lr)

    def step(src: Params, dst: Params, with_loss: bool) -> None:
        partials((blocks,), block, (X, y, *src, n64, np.int32(with_loss), partial))
        update((P,), block, (partial, blocks64, n64, lr_, *src, *dst, grad, loss))

    def replay(first: int, length: int) -> None:
        """``length`` steps without logging from bufs[first], as CUDA graph replays."""
        while length > 0:
            k = min(length, be.graph_steps)
            key = (k, first)
            if key not in ws.graphs:
                stream.begin_capture()
                try:
                    for i in range(k):
                        step(bufs[(first + i) % 2], bufs[(first + i + 1) % 2], False)
                finally:
                    ws.graphs[key] = stream.end_capture()
                ws.captures += 1
            ws.graphs[key].launch(stream)
            first, length = (first + k) % 2, length - k

    cur = 0  # index of the buffer holding the current parameters
    last_finite: tuple[int, Params] | None = None
    history: list[tuple[int, float]] = []
    use_graphs = be.cuda_graphs and hasattr(stream, "begin_capture")
    with stream:
        s = 0
        while s < steps:
            if log_every > 0 and s % log_every == 0:
                step(bufs[cur], bufs[1 - cur], True)
                value = float(loss[0])  # the one host transfer, on logging steps only
                if not math.isfinite(value):
                    raise diverged(s, lr, last_finite, params)
                last_finite = (s, Params(*(p.copy() for p in bufs[cur])))
                history.append((s, value))
                if on_log is not None:
                    on_log(s, value)
                cur, s = 1 - cur, s + 1
                continue
            run = (min(steps, s + log_every - s % log_every) if log_every > 0 else steps) - s
            if use_graphs and run >= 2:
                replay(cur, run)
                cur = (cur + run) % 2
                s += run
            else:
                step(bufs[cur], bufs[1 - cur], False)
                cur, s = 1 - cur, s + 1
        # what is handed back gets allocations of its own (the workspace is reused)
        final = Params(*(p.copy() for p in bufs[cur]))
        out = None
        if want_grads:
            dh = d * h
            g = grad
            out = (loss.reshape(()).copy(), Params(
                g[:dh].reshape(d, h).copy(), g[dh:dh + h].copy(),
                g[dh + h:dh + 2 * h].reshape(h, 1).copy(), g[dh + 2 * h:dh + 2 * h + 1].copy()))
        caller.wait_event(stream.record())
    return RunResult(final, history, last_finite=last_finite), out
