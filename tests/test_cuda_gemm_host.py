"""The capture-safe matrix product of the cupy backend's CUDA-graph path
(``backends/cuda/gemm.py`` and ``gemm.cu``), checked without a GPU: the kernels' exact text
compiled as C++ and run under the SIMT emulator (tests/cuda_emulation.py), launched as
:class:`Gemm` launches them on CuPy, against NumPy's products; bugs planted in the text
must fail that. And the core's gradient step computed in the namespace that carries it
takes every one of its products there, and gives the core's gradients. And CuPy's capture
of them (``CupyGraphs``: its stream, events and memory pool) against the stand-in for CuPy
of tests/cupy_standin.py, whose streams run only when ordered to and whose capture records
launches and copies rather than running them.
Whether it is right and fast on a GPU is NOT shown here (the GPU check's jobs, #27, #28).
"""

from __future__ import annotations

import types

import array_api_compat
import numpy as np
import pytest
from cuda_emulation import GEMM, Kernel, compile_kernels
from cupy_standin import DeviceArray, done, fake_cupy
from nnbin_backends.cuda import gemm as cuda_gemm
from nnbin_backends.cuda.graphs import CupyGraphs

import nnbin
from nnbin.model import value_and_grads

BLOCK = 32  # threads a block: a multiple of the warp; small, so the emulator is quick


def make_gemm(folder, source: str | None = None) -> cuda_gemm.Gemm:
    """A :class:`Gemm` on NumPy arrays: ``raw_module`` compiles the text (``source``: a
    planted copy) for the emulator; unfilled memory reads as NaN."""

    def raw_module(code, options):
        lib = compile_kernels(source or code, folder, tuple(options), wrappers=GEMM)
        return types.SimpleNamespace(get_function=lambda name: Kernel(lib, name, strided=True))

    return cuda_gemm.Gemm(raw_module, lambda shape, dtype: np.full(shape, np.nan, dtype), BLOCK)


def _operands(m, k, n, dtype, transposed, seed=0):
    rng = np.random.default_rng(seed)
    if transposed:  # views with the core's strides: A = (K, M)^T, B = (N, K)^T
        a = rng.normal(size=(k, m)).astype(dtype).T
        b = rng.normal(size=(n, k)).astype(dtype).T
    else:
        a = rng.normal(size=(m, k)).astype(dtype)
        b = rng.normal(size=(k, n)).astype(dtype)
    return a, b


def check_product(gemm, a, b):
    """a @ b within the forward error bound of a sum of K products, K eps |A| |B|."""
    return assert_product(gemm(a, b), a, b)


def assert_product(got, a, b):
    got = np.asarray(got)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = a64 @ b64
    eps = float(np.finfo(a.dtype).eps)
    bound = (a.shape[1] + 2) * eps * (np.abs(a64) @ np.abs(b64)) + 1e-300
    assert got.shape == exact.shape and got.dtype == a.dtype
    assert np.all(np.abs(got - exact) <= bound), np.max(np.abs(got - exact) / bound)
    return got


# (M, K, N): the seed network's products (N = 600 samples: a sum split in three pieces),
# one row, one column, no terms, no outputs
SHAPES = [(600, 1, 32), (33, 600, 32), (1, 600, 32), (32, 1, 600), (5, 3, 7), (1, 1, 1),
          (3, 0, 4), (0, 4, 3), (2, 513, 1)]  # fmt: skip


@pytest.mark.parametrize("transposed", [False, True], ids=["contiguous", "transposed"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_match_numpy(tmp_path, dtype, shape, transposed):
    a, b = _operands(*shape, dtype, transposed)
    check_product(make_gemm(tmp_path), a, b)


def test_the_same_inputs_give_the_same_bits(tmp_path):
    gemm = make_gemm(tmp_path)
    a, b = _operands(33, 700, 32, "float32", True)
    assert gemm(a, b).tobytes() == gemm(a, b).tobytes()


def test_a_long_sum_is_split_and_a_short_one_is_not():
    assert cuda_gemm.plan(1) == (1, 1) and cuda_gemm.plan(0) == (1, 1)
    assert cuda_gemm.plan(cuda_gemm.KCHUNK) == (1, cuda_gemm.KCHUNK)
    assert cuda_gemm.plan(cuda_gemm.KCHUNK + 1) == (2, cuda_gemm.KCHUNK)


PLANTED = {  # a bug in gemm.cu's text -> what it breaks
    "a piece of a split sum dropped": ("for (long long s = 0;", "for (long long s = 1;"),
    "A's strides swapped": ("A[m * sam + k * sak]", "A[m * sak + k * sam]"),
    "the last piece cut short": ("? k0 + kchunk : K;", "? k0 + kchunk : K - 1;"),
}  # fmt: skip


@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_planted_kernel_bug_fails_the_check(tmp_path, planted):
    old, new = PLANTED[planted]
    text = cuda_gemm.source()
    assert text.count(old) == 1
    gemm = make_gemm(tmp_path, text.replace(old, new))
    a, b = _operands(33, 600, 32, "float64", True)
    with pytest.raises(AssertionError):
        check_product(gemm, a, b)


def test_other_operands_are_left_to_the_library(tmp_path):
    gemm = make_gemm(tmp_path)
    xp = cuda_gemm.CaptureSafe(array_api_compat.array_namespace(np.empty(0)), gemm)
    a = np.arange(6.0).reshape(2, 3)
    assert not gemm.applies(a, a.T.astype(np.float32))  # two dtypes
    assert not gemm.applies(a.astype(np.int64), a.T.astype(np.int64))
    np.testing.assert_array_equal(xp.matmul(a, np.arange(3.0)), a @ np.arange(3.0))  # 1-D
    np.testing.assert_array_equal(xp.tensordot(a, a, axes=2), np.tensordot(a, a, axes=2))
    assert xp.exp is np.exp or xp.exp(0.0) == 1.0  # the rest is the library's namespace


@pytest.mark.parametrize("hidden", [(), (6,), (6, 5), (4, 3, 5)], ids=repr)
def test_the_core_takes_every_product_through_the_namespace(tmp_path, hidden):
    """The gradients of the core computed in the capture-safe namespace: the same as in the
    library's own (to rounding: another order of the sums), every product of the step
    through it: L hidden layers make L + 1 in the forward pass and 2L in the backward one
    (one without a hidden layer). A product written as ``@`` would bypass it (cuBLAS, which a
    capture refuses) and be missed by this count."""
    gemm = make_gemm(tmp_path)
    xp = _Counting(cuda_gemm.CaptureSafe(array_api_compat.array_namespace(np.empty(0)), gemm))
    X, y = nnbin.two_gaussians(n_per_class=150, seed=1, n_features=3, mean=1.0)
    w = np.random.default_rng(2).integers(0, 4, (X.shape[0], 1)).astype(np.float64)
    params = nnbin.init_params(3, hidden, seed=4)
    kw = dict(activation="tanh", alpha=0.01, weights=w)
    want_loss, want = value_and_grads(params, X, y, **kw)
    loss, grads = value_and_grads(params, X, y, xp=xp, **kw)
    layers = len(hidden)
    assert len(xp.calls) == (2 if layers == 0 else 3 * layers + 1), xp.calls
    assert all(gemm.applies(a, b) for a, b in xp.calls)  # each one the kernels' product
    np.testing.assert_allclose(loss, want_loss, rtol=1e-13)
    for g, e in zip(grads, want, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-11, atol=1e-14)


class _Counting:
    """A namespace that records the operands of each matmul and tensordot it is asked for,
    then hands them on to ``xp`` (the capture-safe one)."""

    def __init__(self, xp):
        self._xp, self.calls = xp, []

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def matmul(self, a, b, /):
        self.calls.append((a, b))
        return self._xp.matmul(a, b)

    def tensordot(self, a, b, /, *, axes=2):
        assert axes == 1
        self.calls.append((a, b))
        return self._xp.tensordot(a, b, axes=axes)


# --- CuPy's capture of the products (CupyGraphs) on the stand-in ------------------------


@pytest.fixture
def cupy(tmp_path):
    standin = fake_cupy(tmp_path)
    yield standin
    DeviceArray.cuda = None


def _captured_product(cupy, a1, b1):
    """Static buffers a, b and c on the device, and a graph of c = a @ b (a split sum: the
    product's two kernels and the copy into c), captured by CupyGraphs; c held 7 before."""
    graphs = CupyGraphs(cupy, array_api_compat.array_namespace(np.empty(0)), 0)
    a, b = cupy.empty(a1.shape, a1.dtype), cupy.empty(b1.shape, b1.dtype)
    c = cupy.empty((a1.shape[0], b1.shape[1]), a1.dtype)
    graphs.put(a, a1), graphs.put(b, b1), graphs.put(c, 7.0)
    replay = graphs.capture(lambda a, b: [graphs.core_xp.matmul(a, b)], [a, b], [c])
    return graphs, (a, b, c), replay


def test_cupy_graphs_replay_the_products_on_what_the_buffers_hold(cupy):
    """CupyGraphs's capture records the products' kernels and the copy out (it runs none of
    them: c keeps what it held, the warm-up's write undone), on a stream of its own in
    relaxed mode, from a memory pool of its own; each replay computes them from what the
    static buffers hold then, ordered after the caller's copies into them and before the
    caller's next read."""
    a1, b1 = _operands(33, 600, 8, "float32", False)
    graphs, (a, b, c), replay = _captured_product(cupy, a1, b1)
    done(cupy)
    assert np.all(np.asarray(c) == 7.0)
    log, stream = cupy.cuda.log, graphs.stream.name
    begin, end = log.index(("begin capture", stream)), log.index(("end capture", stream))
    assert [e for e in log[:begin] if e[0].startswith("nnbin_gemm")] == [
        ("nnbin_gemm", stream), ("nnbin_gemm_sum", stream)]  # the warm-up  # fmt: skip
    assert not [e for e in log[begin:end] if e[0].startswith("nnbin_")]  # recorded, not run
    assert graphs.stream.capture_mode == cupy.cuda.runtime.streamCaptureModeRelaxed
    assert graphs.pool.blocks >= 4  # the warm-up's product, its pieces, c's saved copy...
    for seed in (1, 2):
        replay()
        assert log[-5:] == [
            ("record", "null"), ("wait for null", stream),  # after the caller's copies
            ("graph of 3 launches", stream),
            ("record", stream), (f"wait for {stream}", "null"),  # before its next read
        ]  # fmt: skip
        done(cupy)
        assert_product(c, a1, b1)
        a1, b1 = _operands(33, 600, 8, "float32", False, seed=seed)
        graphs.put(a, a1), graphs.put(b, b1)  # the next replay reads these


def test_a_replay_not_ordered_after_the_callers_stream_would_be_caught(cupy, monkeypatch):
    """The check above fails for a CupyGraphs whose stream does not wait for the caller's
    (nor the caller's for it): the caller reads c before the replay has run."""

    def unordered(self, work):
        with self.stream:
            work()

    monkeypatch.setattr(CupyGraphs, "_ordered", unordered)
    a1, b1 = _operands(33, 600, 8, "float32", False)
    _, (_, _, c), replay = _captured_product(cupy, a1, b1)
    replay()
    done(cupy)
    with pytest.raises(AssertionError):
        assert_product(c, a1, b1)
