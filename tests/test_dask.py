"""The dask backend on a real dask.distributed cluster (2 worker processes)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import nnbin
from nnbin.loop import run as run_loop

pytest.importorskip("dask.array", reason="Dask not installed (pip install 'nnbin[dask]')")
distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")


@pytest.fixture(scope="module")
def client():
    with pytest.MonkeyPatch.context() as env:
        # the workers start with glibc's own heap settings, not nox's (KEEP_HEAP: freed
        # memory kept, which would hold a worker above its memory limit, paused for good)
        for name in [n for n in os.environ if n.startswith("MALLOC_")]:
            env.delenv(name)
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="400MiB",
            dashboard_address=None,
        )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_seed_job_trains_on_a_local_cluster(client):
    import dask.array as da

    X, y = nnbin.two_gaussians(n_per_class=10_000, seed=0)
    Xd = da.from_array(X, chunks=(5_000, 1))
    yd = da.from_array(y, chunks=(5_000, 1))
    # 30 steps (each a round trip to the workers: about 0.5 s on a 2-core machine)
    result = nnbin.train(Xd, yd, steps=30, log_every=10)
    assert result.backend == "dask" and len(result.history) == 3
    assert all(isinstance(p, da.Array) for p in result.params)
    ref = nnbin.train(X, y, steps=30, log_every=10, backend="numpy")
    np.testing.assert_allclose(
        [v for _, v in result.history], [v for _, v in ref.history], rtol=1e-10
    )
    # the parameters live on the cluster's workers, not in this process
    assert len(client.nthreads()) == 2
    holders = client.who_has(result.params.W1)
    assert holders and all(w.startswith("tcp://") for ws in holders.values() for w in ws)


def test_params_are_persisted_so_graphs_do_not_grow(client):
    import dask.array as da

    X, y = nnbin.two_gaussians(n_per_class=2_000, seed=0)
    Xd, yd = da.from_array(X, chunks=(1_000, 1)), da.from_array(y, chunks=(1_000, 1))
    be = nnbin.get_backend("dask")
    p0 = nnbin.init_params(1, 8, 0, backend="dask")
    sizes = [
        len(run_loop(be, p0, Xd, yd, lr=1.0, steps=s, log_every=0).params.W1.dask)
        for s in (1, 5, 20)
    ]
    assert sizes[0] == sizes[1] == sizes[2]  # a persisted array is one key, at any step


def test_data_larger_than_a_worker_trains_chunk_by_chunk(client):
    """N = 2e6, H = 32 float64: each (N, H) temporary is 512 MB, more than a worker's
    400 MiB limit; the chunks (125,000 rows, 32 MB of (rows, H)) fit."""
    import dask.array as da

    n = 2_000_000
    rng = da.random.default_rng(0)
    labels = rng.random((n, 1), chunks=(125_000, 1)) < 0.5
    X = da.where(labels, 6.0, -6.0) + rng.standard_normal((n, 1), chunks=(125_000, 1))
    y = labels.astype("float64")
    result = nnbin.train(X, y, steps=3, log_every=1)
    losses = [v for _, v in result.history]
    assert len(losses) == 3 and losses[2] < losses[0]
    assert all(np.isfinite(losses))
