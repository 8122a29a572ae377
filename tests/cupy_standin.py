"""A stand-in for CuPy on the CPU, for the tests of the cupy backend's CUDA code (the fused
step's driver, and the CUDA-graph path's stream capture): ``RawModule`` compiles the kernels'
exact text as C++ and runs each launch under the SIMT emulator (tests/cuda_emulation.py),
with NumPy arrays as device memory.

It is asynchronous where ordering matters, as a GPU is: a kernel launch, a graph replay, a
copy into a device array (``a[...] = b``, ``set``, ``fill``) and ``.copy()`` are queued on
the current stream and run only when that stream is synchronised — by a host read of a
device scalar, by ``synchronize()``, or by another stream that waits for one of its events
while it runs its own queue. So code that hands back results without ordering the caller's
stream after its own leaves them unfilled (NaN) for a caller that synchronises its own
stream. While a stream captures, its launches and copies are recorded into the graph, not
run; a copy reads its source when it runs (a device-to-device copy), a host array when it is
queued. Allocations go through the allocator of ``cuda.using_allocator`` where one is set
(memory pools count their blocks). Kernels are launched with the real block size and report
``num_regs`` and ``local_size_bytes`` as CuPy's do. What only a GPU can show (CUDA
semantics beyond this model, speed) is not shown."""

from __future__ import annotations

import contextlib
import types

import numpy as np
from cuda_emulation import FUSED, GEMM, Kernel, compile_kernels


class FakeCuda:
    """cupy.cuda as far as the driver uses it: streams, events, capture, graphs, devices."""

    def __init__(self) -> None:
        self.null = FakeStream(self, "null")
        self.current = self.null
        self.capturing: FakeStream | None = None
        self.streams: list[FakeStream] = [self.null]
        self.log: list[tuple[str, str]] = []  # (event, stream) in the order they happen
        self.runtime = types.SimpleNamespace(
            getDevice=lambda: 0,
            memGetInfo=lambda: (80 << 30, 80 << 30),
            streamCaptureModeRelaxed=2,  # cudaStreamCaptureModeRelaxed
        )
        self.allocator = None  # cupy.cuda.using_allocator's, where one is set
        self.attributes = {
            "MultiProcessorCount": 2,
            "MaxThreadsPerMultiProcessor": 2048,
            "MaxRegistersPerMultiprocessor": 65536,
        }

    def Stream(self, non_blocking=False):  # noqa: N802 - cupy's spelling
        assert non_blocking, "a blocking stream would serialise with the null stream"
        stream = FakeStream(self, f"stream{len(self.streams)}")
        self.streams.append(stream)
        return stream

    def get_current_stream(self):
        return self.current

    def Device(self, device=0):  # noqa: N802
        assert device == 0, "the stand-in has one device"
        return FakeDevice(self)

    def MemoryPool(self):  # noqa: N802
        return FakePool()

    @contextlib.contextmanager
    def using_allocator(self, allocator):
        previous, self.allocator = self.allocator, allocator
        try:
            yield
        finally:
            self.allocator = previous

    def capturing_current(self) -> bool:
        """Whether work queued now is recorded into a graph (the current stream captures)."""
        return self.capturing is not None and self.capturing is self.current

    def synchronize(self):
        for stream in self.streams:
            stream.synchronize()

    def pending(self) -> int:
        return sum(len(s.queue) for s in self.streams)


class FakeStream:
    def __init__(self, cuda: FakeCuda, name: str) -> None:
        self.cuda, self.name, self.recorded = cuda, name, None
        self.queue: list = []  # operations not yet run, in order
        self.ran = 0  # operations run so far

    def __enter__(self):
        self.previous, self.cuda.current = self.cuda.current, self
        return self

    def __exit__(self, *exc):
        self.cuda.current = self.previous

    def enqueue(self, op):
        self.queue.append(op)

    def run_to(self, mark: int) -> None:
        while self.ran < mark and self.queue:
            self.queue.pop(0)()
            self.ran += 1

    def synchronize(self):
        self.run_to(self.ran + len(self.queue))

    def record(self):
        self.cuda.log.append(("record", self.name))
        return (self, self.ran + len(self.queue))

    def wait_event(self, event):
        other, mark = event
        self.cuda.log.append((f"wait for {other.name}", self.name))
        self.queue.append(lambda: other.run_to(mark))  # later work here waits behind it

    def begin_capture(self, mode=None):
        assert self.cuda.capturing is None and self.name != "null"
        self.cuda.capturing, self.recorded = self, []
        self.capture_mode = mode
        self.cuda.log.append(("begin capture", self.name))

    def end_capture(self):
        assert self.cuda.capturing is self
        self.cuda.capturing = None
        self.cuda.log.append(("end capture", self.name))
        return FakeGraph(self.cuda, self.recorded)


class FakeDevice:
    """cupy.cuda.Device(0): its attributes, synchronize(), and a context."""

    def __init__(self, cuda: FakeCuda) -> None:
        self.attributes, self.synchronize = cuda.attributes, cuda.synchronize

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class FakePool:
    """A memory pool: ``malloc`` counts the blocks taken from it (what allocates them is
    the stand-in's ``empty``)."""

    def __init__(self) -> None:
        self.blocks = 0

    def malloc(self, nbytes: int) -> None:
        self.blocks += 1


class FakeCopy:
    """A copy into device memory as a graph records it: run at each replay."""

    def __init__(self, run) -> None:
        self.run = run


class FakeGraph:
    def __init__(self, cuda: FakeCuda, launches) -> None:
        self.cuda, self.launches = cuda, launches

    def launch(self, stream):
        assert self.cuda.capturing is None
        self.cuda.log.append((f"graph of {len(self.launches)} launches", stream.name))
        for kernel, args in self.launches:
            stream.enqueue(lambda k=kernel, a=args: k.run(*a))


class FakeKernel:
    """Queued on the current stream, or recorded while that stream captures; with the
    attributes CuPy's kernels have."""

    def __init__(self, cuda: FakeCuda, kernel: Kernel, num_regs=128, local_size_bytes=0):
        self.cuda, self.kernel = cuda, kernel
        self.num_regs, self.local_size_bytes = num_regs, local_size_bytes

    def __call__(self, grid, block, args):
        stream = self.cuda.current
        assert stream.name != "null", "fused kernels run on the backend's own stream"
        if self.cuda.capturing is stream:
            stream.recorded.append((self, (grid, block, args)))
        else:
            self.cuda.log.append((self.kernel.name, stream.name))
            stream.enqueue(lambda: self.run(grid, block, args))

    def run(self, grid, block, args):
        self.kernel(grid, block, args)


class DeviceArray(np.ndarray):
    """Device memory in the stand-in. Reading an element to the host synchronises the
    current stream (and raises while ``forbidden`` is set, as cupyx.allow_synchronize(False)
    does); writing into it (``a[...] = b``, ``set``, ``fill``) and ``copy()`` are queued on
    the current stream, or recorded while it captures."""

    forbidden = False
    cuda: FakeCuda | None = None

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if not isinstance(out, np.ndarray):
            if DeviceArray.forbidden:
                raise RuntimeError("device synchronization was detected while disallowed")
            if DeviceArray.cuda is not None:
                DeviceArray.cuda.current.synchronize()
                out = super().__getitem__(index)
        return out

    @staticmethod
    def _queue(op) -> None:
        cuda = DeviceArray.cuda
        if cuda is None:
            op()
        elif cuda.capturing_current():
            cuda.current.recorded.append((FakeCopy(op), ()))
        else:
            cuda.current.enqueue(op)

    def __setitem__(self, index, value):
        base = super().__setitem__
        if isinstance(value, DeviceArray):  # device to device: the source read when it runs
            src = value
            self._queue(lambda: base(index, np.array(src.view(np.ndarray), copy=True)))
        else:  # from the host: read now
            value = np.array(value, copy=True)
            self._queue(lambda: base(index, value))

    def set(self, host):
        """cupy.ndarray.set: a host array copied in, on the current stream."""
        value = np.array(host, dtype=self.dtype, copy=True).reshape(self.shape)
        self._queue(lambda: np.copyto(self.view(np.ndarray), value))

    def fill(self, value):
        self._queue(lambda: np.ndarray.fill(self, value))

    def __dlpack__(self, *args, **kwargs):
        # DLPack's stream handshake: the consumer waits for the producer's current stream
        if DeviceArray.cuda is not None:
            DeviceArray.cuda.current.synchronize()
        return super().__dlpack__(*args, **kwargs)

    def copy(self, order="C"):
        out = empty(self.shape, self.dtype)
        src = self
        self._queue(lambda: np.copyto(out.view(np.ndarray), src.view(np.ndarray)))
        return out


def empty(shape, dtype=float) -> DeviceArray:
    """cupy.empty: taken from the allocator set by ``using_allocator``, if one is; unfilled
    memory reads as NaN."""
    out = np.full(shape, np.nan, dtype).view(DeviceArray)
    cuda = DeviceArray.cuda
    if cuda is not None and cuda.allocator is not None:
        cuda.allocator(out.nbytes)
    return out


def fake_cupy(tmp_path):
    cuda = FakeCuda()
    DeviceArray.cuda = cuda
    kernels = {"num_regs": 128, "local_size_bytes": 0}  # what the stand-in's kernels report

    def raw_module(code, options=()):
        flags = [o for o in options if not o.startswith("-D")]  # the shape's defines apart
        gemm = "nnbin_gemm" in code  # the graph path's products; else the fused step's
        assert sum(o.startswith("-DNNBIN_") for o in options) == (2 if gemm else 5)
        cuda.log.append((f"compile {' '.join(flags)}", "host"))
        lib = compile_kernels(
            code,
            tmp_path / str(abs(hash((code, *options)))),
            options,
            wrappers=GEMM if gemm else FUSED,
        )
        return types.SimpleNamespace(
            get_function=lambda name: FakeKernel(cuda, Kernel(lib, name, strided=gemm), **kernels)
        )

    return types.SimpleNamespace(
        cuda=cuda,
        RawModule=raw_module,
        empty=empty,
        kernels=kernels,
        empty_like=lambda a: empty(a.shape, a.dtype),
        asarray=lambda a, dtype=None: np.asarray(a, dtype=dtype),
        ascontiguousarray=np.ascontiguousarray,
    )


def done(cupy) -> None:
    """What a caller does before reading results: synchronise its own (the null) stream.
    Work on another stream is done only if the code under test ordered the caller after it."""
    cupy.cuda.null.synchronize()
