"""SciPy sparse X on the backends that take it (``takes_sparse``: numpy), against the
independent reference on the same values, dense: gradients through densified blocks of rows
(several blocks, a short last one), whole runs (full batch, shuffled mini-batches, early
stopping's held-out rows), and the logits of :func:`nnbin.model.forward_blocks`. A planted
bug in the sparse path (a shuffle that leaves sparse rows in place) must fail here. The
other backends refuse sparse X with one error (tests/test_estimator.py, tests/test_api.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import nnbin
import nnbin.backend
import nnbin.model

from . import reference as ref
from .helpers import assert_close
from .test_network import DeepCase, _dtype64, _names, check_whole_run

sparse = pytest.importorskip("scipy.sparse")


@pytest.fixture
def sparse_backend(backend):
    if not backend.about.takes_sparse:
        pytest.skip(f"{backend.name} trains on dense data only (it refuses SciPy sparse X)")
    return backend


def _sparse_case(be, hidden: tuple[int, ...]) -> tuple[DeepCase, object]:
    """A DeepCase whose X is about 70% zero, and that X as a CSR matrix."""
    case = DeepCase(be, _dtype64(be), n=61, d=4, hidden=hidden, seed=21)
    case.X[np.random.default_rng(22).random(case.X.shape) < 0.7] = 0.0
    return case, sparse.csr_matrix(case.X)


@pytest.mark.parametrize("block_rows", [None, 16], ids=["one-block", "blocks16"])
@pytest.mark.parametrize("hidden", [(5,), (7, 3), ()], ids=["H5", "H7-3", "none"])
def test_sparse_gradients_match_reference(sparse_backend, hidden, block_rows):
    case, Xs = _sparse_case(sparse_backend, hidden)
    loss, grads = nnbin.model.value_and_grads(
        case.params, Xs, case.yd, activation="tanh", alpha=0.2, block_rows=block_rows
    )
    want = ref.deep_loss(case.layers, case.X, case.y, "tanh", 0.2)
    assert_close(case.be, loss, np.asarray(want), dtype=case.dtype, what="op", label="loss")
    expected = ref.flat(ref.deep_gradients(case.layers, case.X, case.y, "tanh", 0.2))
    for name, g, e in zip(_names(len(case.layers)), grads, expected, strict=True):
        assert_close(case.be, g, e, dtype=case.dtype, what="op", label=f"sparse d{name}")


@pytest.mark.parametrize("rows", [None, 16, 7], ids=["whole", "blocks16", "blocks7"])
def test_sparse_logits_match_reference(sparse_backend, rows):
    case, Xs = _sparse_case(sparse_backend, (7, 3))
    z = nnbin.model.forward_blocks(case.params, Xs, "relu", rows)
    want = ref.deep_forward(case.layers, case.X, "relu")[2]
    assert_close(case.be, z, want, dtype=case.dtype, what="op", label="sparse logits")


@pytest.mark.parametrize(
    "name, batch_size, extra",
    [
        ("gd", None, {}),
        ("adam", 48, {}),
        ("adam", 40, {"early_stopping": True, "validation_fraction": 0.25, "n_iter_no_change": 3}),
        ("momentum", 48, {"hidden": ()}),
    ],
    ids=["gd-full-batch", "adam-batch48", "adam-early-stopping", "momentum-no-hidden-layer"],
)
def test_sparse_whole_run_matches_reference(sparse_backend, name, batch_size, extra):
    epochs = 30 if extra.get("early_stopping") else 12
    check_whole_run(
        sparse_backend, _dtype64(sparse_backend), name, batch_size, epochs=epochs, sparse=True,
        **extra,
    )  # fmt: skip


@pytest.mark.parametrize("planted", [False, True], ids=["unmutated", "mutated"])
def test_planted_sparse_shuffle_bug_is_caught(sparse_backend, monkeypatch, planted):
    """Each epoch's shuffle taken on dense rows but not on sparse ones (the sparse rows left
    in their order, the labels shuffled): the whole-run check fails."""
    if planted:
        take = nnbin.backend.take_rows

        def unshuffled_sparse(a, rows):
            return a if nnbin.model.is_sparse(a) else take(a, rows)

        monkeypatch.setattr(nnbin.backend, "take_rows", unshuffled_sparse)
    check = lambda: check_whole_run(  # noqa: E731
        sparse_backend, _dtype64(sparse_backend), "adam", 48, sparse=True
    )
    if not planted:
        check()
        return
    with pytest.raises(AssertionError):
        check()
