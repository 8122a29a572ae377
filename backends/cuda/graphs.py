"""The array-API core's own steps replayed as CUDA graphs: every network, optimizer and batch
size on CUDA tensors without one launch per operation (issue #28).

A step of the core on a GPU is some 30 small kernels per mini-batch, each paying a launch
from Python (~800 µs a step at N = 2e4 on an H100, where the kernels take a few µs each).
:class:`GraphRunner` captures the core's step once (the loop's :func:`nnbin.loop.epoch`,
unchanged: forward, hand-written backward, optimizer update, the mini-batch gather) into
a graph that reads and writes **static buffers**: the parameters, the optimizer state, the
step size (a 0-d array, so a schedule's new step size is a fill, not a new capture), the
epoch's order of the samples (an index array on the device, filled from the host's draw
before each replay: the same batches as every backend) and the loss. A replay is one
launch: an epoch of mini-batches, or, full batch, a graph of :data:`CHUNK` steps between
two logged ones. The loop (:mod:`nnbin.loop`), the logging, the stopping rule
and the last-finite bookkeeping are the eager core's; nothing is read to the host
inside a call but the logged losses, once.

Graphs and buffers live in a **workspace** kept by the backend's runners (a few, least recently used
dropped), keyed by everything a capture bakes in: the addresses, shapes, strides and
dtypes of the data, the parameters' shapes, the options but the step size and the seed.
A later run on the same data (another seed, another step size, a continued run) reuses
them: its starting parameters and state are copied in. A workspace holds no reference to
the caller's arrays, only their addresses (memory reused at the same address with the same
layout is what a fresh capture would read, as the fused driver's workspaces). A run hands
back new arrays: the workspace's buffers are the next run's.

What a library supplies is a :class:`Graphs` object: ``capture(fn, inputs, outputs)``
returns a replay that computes ``fn(*inputs)`` and writes it into ``outputs``, and
``put(dst, src)`` copies into a static buffer outside a graph. PyTorch's is
:class:`TorchGraphs` (``torch.cuda.CUDAGraph``, whose capture allows cuBLAS); CuPy's is
:class:`CupyGraphs` (its stream capture refuses cuBLAS: the core's products are the
kernels of :mod:`nnbin_backends.cuda.gemm`, handed to the core in its namespace). The
tests hold the runner against a CPU stand-in that traces ``fn`` once, baking every Python
value in as a capture does, and the products' kernels under the SIMT emulator. Neither
library's capture is verified on a GPU yet (the GPU check's ``graphs`` jobs).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nnbin.errors import BackendUnavailableError, NnbinError
from nnbin.loop import Advanced, OnRun, Run, epoch, segments
from nnbin.model import Array, Params, device_of, like
from nnbin.options import FUSED_ONLY

#: full-batch steps one replay of the plain graph holds
CHUNK = 16
#: workspaces a backend keeps (each about the parameters and state twice, and one order)
MAX_WORKSPACES = 4


class Graphs:
    """How one library captures and replays (see the module's docstring)."""

    #: how results name the path
    name = "CUDA graphs"

    def capture(
        self, fn: Callable[..., Sequence[Any]], inputs: Sequence[Any], outputs: Sequence[Any]
    ) -> Callable[[], None]:
        raise NotImplementedError

    def put(self, dst: Any, src: Any) -> None:
        """``src`` (an array of the library, a NumPy array or a Python number) into the
        static buffer ``dst``, ordered before the next replay."""
        raise NotImplementedError

    def address(self, a: Any) -> int:
        raise NotImplementedError


class TorchGraphs(Graphs):
    """``torch.cuda.CUDAGraph`` with one private memory pool a workspace: each capture is
    preceded by a warm-up on a side stream (cuBLAS and the caching allocator set themselves
    up outside the capture; the buffers it wrote are restored)."""

    name = "CUDA graphs (torch.cuda.CUDAGraph)"

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.pool = torch.cuda.graph_pool_handle()

    def capture(
        self, fn: Callable[..., Sequence[Any]], inputs: Sequence[Any], outputs: Sequence[Any]
    ) -> Callable[[], None]:
        torch = self.torch

        def step() -> None:
            for out, value in zip(outputs, fn(*inputs)):
                out.copy_(value)

        saved = [o.clone() for o in outputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream().wait_stream(side)
        for out, value in zip(outputs, saved):
            out.copy_(value)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            step()
        return graph.replay

    def put(self, dst: Any, src: Any) -> None:
        if isinstance(src, np.ndarray):
            src = self.torch.from_numpy(src)
        if isinstance(src, float | int):
            dst.fill_(src)
        else:
            dst.copy_(src)

    def address(self, a: Any) -> int:
        return int(a.data_ptr())


class CupyGraphs(Graphs):
    """CuPy's stream capture (``Stream.begin_capture``) on a stream of its own, ordered
    after the current stream's work by events at each replay (a non-blocking stream does
    not wait for the null stream's copies by itself), and before what follows it. Every
    allocation of a warm-up or a capture comes from a memory pool of its own, which nothing
    else allocates from, so no block a graph reads is handed out elsewhere (PyTorch's
    private pools). CuPy's capture refuses cuBLAS: the core computes in
    :attr:`core_xp`, whose products are :mod:`gemm`'s kernels. One per device."""

    name = "CUDA graphs (CuPy stream capture)"

    def __init__(self, cupy: Any, xp: Any, device: int) -> None:
        from .gemm import CaptureSafe, Gemm

        self.cupy, self.device = cupy, device
        with cupy.cuda.Device(device):
            self.stream = cupy.cuda.Stream(non_blocking=True)
        self.pool = cupy.cuda.MemoryPool()
        self.core_xp = CaptureSafe(xp, Gemm(cupy.RawModule, cupy.empty))

    def _ordered(self, work: Callable[[], None]) -> None:
        """``work`` on :attr:`stream`, after the current stream's work and before what is
        queued on it next."""
        cupy = self.cupy
        current = cupy.cuda.get_current_stream()
        self.stream.wait_event(current.record())
        with self.stream:
            work()
        current.wait_event(self.stream.record())

    def capture(
        self, fn: Callable[..., Sequence[Any]], inputs: Sequence[Any], outputs: Sequence[Any]
    ) -> Callable[[], None]:
        cupy = self.cupy

        def step() -> None:
            for out, value in zip(outputs, fn(*inputs)):
                out[...] = value

        graph: list[Any] = []

        def warm_then_capture() -> None:
            saved = [o.copy() for o in outputs]
            step()  # kernels compiled and loaded, the pool's blocks made, outside a capture
            for out, value in zip(outputs, saved):
                out[...] = value
            # relaxed: the pool may still map a block (cudaMalloc) the warm-up did not need
            relaxed = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", None)
            self.stream.begin_capture(*(() if relaxed is None else (relaxed,)))
            try:
                step()
            finally:
                graph.append(self.stream.end_capture())

        with cupy.cuda.Device(self.device), cupy.cuda.using_allocator(self.pool.malloc):
            self._ordered(warm_then_capture)
        (captured,) = graph

        def replay() -> None:
            with cupy.cuda.Device(self.device):
                self._ordered(lambda: captured.launch(self.stream))

        return replay

    def put(self, dst: Any, src: Any) -> None:
        if isinstance(src, float | int):
            dst.fill(src)
        elif isinstance(src, np.ndarray):
            dst.set(np.ascontiguousarray(src, dtype=dst.dtype))
        else:
            dst[...] = src

    def address(self, a: Any) -> int:
        return int(a.data.ptr)


@dataclasses.dataclass
class Workspace:
    """One capture's static buffers and its graphs (see the module's docstring)."""

    params: list[Any]
    state: list[Any]
    lr: Any
    order: Any
    loss: Any
    #: (epochs, logged) -> replay
    graphs: dict[tuple[int, bool], Callable[[], None]] = dataclasses.field(default_factory=dict)
    #: how many graphs were captured in it (the tests count recaptures)
    captures: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def leaves(tree: Any) -> list[Any]:
    """The arrays of nested tuples (parameters; an optimizer state), depth first."""
    if isinstance(tree, tuple):
        return [a for part in tree for a in leaves(part)]
    return [tree]


def rebuild(tree: Any, values: Any) -> Any:
    """``values`` (an iterator) in the shape of ``tree``, the container types kept."""
    if isinstance(tree, tuple):
        return like(tree, [rebuild(part, values) for part in tree])
    return next(values)


class GraphRunner(OnRun):
    """The core's epochs of a :class:`~nnbin.loop.Run` as CUDA-graph replays on static
    buffers, a runner beside the loop (see the module's docstring). ``graphs``: the
    library's :class:`Graphs`; ``workspaces``: where the backend keeps them between runs
    (None: this run's own)."""

    def __init__(
        self, run: Run, graphs: Graphs, workspaces: OrderedDict[Any, Workspace] | None = None
    ) -> None:
        super().__init__(run)
        params, X, lr = run.params, run.X, float(run.opt.lr)
        self.graphs = graphs
        xp, dtype = run.xp, X.dtype
        self.shuffles = run.config.batch_size is not None and run.config.shuffle
        # full batch: CHUNK steps a replay; mini-batches: an epoch is hundreds of kernels
        self.chunk = CHUNK if run.config.batch_size is None else 1
        key = self._key(params)
        shelf = OrderedDict() if workspaces is None else workspaces
        ws = shelf.pop(key, None)
        if ws is None or not ws.lock.acquire(blocking=False):
            ws = Workspace(
                [xp.asarray(p, copy=True) for p in leaves(params)],
                [xp.asarray(a, copy=True) for a in leaves(run.state)],
                xp.asarray(float(lr), dtype=dtype, device=device_of(X)),
                xp.asarray(np.arange(run.n), device=device_of(X)) if self.shuffles else None,
                xp.zeros((), dtype=dtype, device=device_of(X)),
            )
            ws.lock.acquire()
        else:  # reused: this run's start copied in
            for dst, src in zip(ws.params + ws.state, leaves(params) + leaves(run.state)):
                graphs.put(dst, src)
            graphs.put(ws.lr, float(lr))
        shelf[key] = ws
        while len(shelf) > MAX_WORKSPACES:
            shelf.popitem(last=False)
        self.ws, self._shape = ws, (params, run.state)
        run.opt = run.opt.at(ws.lr)  # the step size a buffer
        self._on_buffers()
        how = [f"up to {CHUNK} steps a replay" if self.chunk > 1 else "one epoch a replay"]
        how += [run.loop.partition("(")[2].rstrip(")")] if run.loop else []  # the batches
        self.loop = f"{graphs.name} of the array-API core ({'; '.join(how)})"

    def _on_buffers(self) -> None:
        """The run's parameters and state: the workspace's buffers."""
        self.run.params = rebuild(self._shape[0], iter(self.ws.params))
        self.run.state = rebuild(self._shape[1], iter(self.ws.state))

    def _key(self, params: Params) -> tuple[Any, ...]:
        """Everything a capture bakes in (not the step size, a buffer; not the seed)."""
        run = self.run
        data = [a for a in (run.X, run.y, run.w) if a is not None]
        return (
            tuple((self.graphs.address(a), tuple(a.shape), str(a.dtype)) for a in data),
            tuple(tuple(p.shape) for p in leaves(params)),
            tuple(tuple(a.shape) for a in leaves(run.state)),
            run.config.replace(seed=0, samples_seen=0, **FUSED_ONLY),
            run.opt.at(1.0),
            run.block_rows,
        )

    def _graph(self, epochs: int, logged: bool) -> Callable[[], None]:
        """The replay of ``epochs`` epochs (the first logged), captured on first use."""
        ws, run = self.ws, self.run
        if (epochs, logged) not in ws.graphs:

            def fn(*inputs: Any) -> list[Any]:
                values = iter(inputs)
                run.params = rebuild(self._shape[0], values)
                run.state = rebuild(self._shape[1], values)
                order = next(values) if self.shuffles else None
                loss = None
                for e in range(epochs):  # the loop's own training step, captured
                    out = epoch(run, logged and e == 0, order)
                    loss = out if out is not None else loss
                new = leaves(run.params) + leaves(run.state)
                return [*new, ws.loss if loss is None else loss]

            inputs = ws.params + ws.state + ([ws.order] if self.shuffles else [])
            outputs = ws.params + ws.state + [ws.loss]
            try:
                ws.graphs[(epochs, logged)] = self.graphs.capture(fn, inputs, outputs)
            except NnbinError:
                raise
            except Exception as exc:  # the library refused the capture: one clear error
                said = str(exc).strip().splitlines()
                raise BackendUnavailableError(
                    f"{self.graphs.name} could not capture the core's step "
                    f"({type(exc).__name__}: {said[0] if said else 'no message'}); "
                    "cuda_graphs=False trains with the eager core"
                ) from exc
            ws.captures += 1
            self._on_buffers()  # the capture left the run on the arrays it traced
        return ws.graphs[(epochs, logged)]

    def _replay(self, epochs: int, logged: bool) -> None:
        if self.shuffles:
            order = self.run.order()
            assert order is not None
            self.graphs.put(self.ws.order, order)
        self._graph(epochs, logged)()

    def _plain(self, k: int) -> None:
        for size in {1, self.chunk}:  # both plain graphs at once: a capture waits for the
            self._graph(size, False)  # device (torch's synchronises), never a later call
        while k > 0:
            epochs = self.chunk if k >= self.chunk else 1
            self._replay(epochs, False)
            k -= epochs

    def _logged(self) -> Array:
        self._replay(1, True)
        return self.run.xp.asarray(self.ws.loss, copy=True)

    def snapshot(self) -> Params:
        """A copy of the parameters (the buffers are the next replay's)."""
        xp = self.run.xp
        return like(self.params, (xp.asarray(p, copy=True) for p in self.params))

    def advance(self, n: int, every: int) -> Advanced:
        read = None if self.rule is None else self.run.read
        return segments(n, every, self._logged, self._plain, self.snapshot, read)

    def set_lr(self, lr: float) -> None:
        self.graphs.put(self.ws.lr, float(lr))

    def result(self) -> Params:
        """New arrays (the workspace's buffers are the next run's)."""
        best = super().result()
        params = self.snapshot() if best is self.params else best
        copies = (self.run.xp.asarray(a, copy=True) for a in leaves(self.run.state))
        self.run.state = rebuild(self.run.state, copies)
        return params

    def close(self) -> None:
        """The workspace released for the next run, however this one ended."""
        if self.ws.lock.locked():
            self.ws.lock.release()
