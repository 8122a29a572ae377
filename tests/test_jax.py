"""The jax backend: the core under jit, vmap and grad; compiled runs; x64; several devices."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import nnbin
from nnbin.loop import Run, drive
from nnbin.loop import run as run_loop

jax = pytest.importorskip("jax", reason="JAX not installed (pip install 'nnbin[jax]')")
jnp = jax.numpy


@pytest.fixture(scope="module")
def data():
    X, y = nnbin.two_gaussians(n_per_class=500, seed=0)
    return jnp.asarray(X, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.float32)


def test_jax_in_jax_out(data):
    X, y = data
    result = nnbin.train(X, y, steps=50, log_every=10)
    assert result.backend == "jax" and result.dtype == "float32"
    assert result.loop.startswith("jax.lax.fori_loop under jax.jit")
    assert all(isinstance(a, jax.Array) and a.dtype == jnp.float32 for a in result.params)
    assert {a.devices().pop() for a in result.params} == X.devices()
    assert isinstance(nnbin.predict_proba(result.params, X), jax.Array)
    assert [s for s, _ in result.history] == [0, 10, 20, 30, 40]


def python_loop(params, X, y, **run):
    """The array-API core, eagerly (one Python iteration a step), in the one loop: the plain
    reference a backend's own path is held against."""
    return drive(Run(params, X, y, run["lr"]), **run)


def test_compiled_run_equals_python_loop(data):
    """The compiled whole-run path and a plain loop over nnbin.step agree step for step."""
    X, y = data
    p0 = nnbin.init_params(1, 8, seed=3, backend="jax")
    be = nnbin.get_backend("jax")
    for steps, every in [(23, 5), (20, 5), (7, 0), (1, 1)]:
        compiled = run_loop(be, p0, X, y, lr=0.5, steps=steps, log_every=every)
        plain = python_loop(p0, X, y, lr=0.5, steps=steps, log_every=every)
        assert [s for s, _ in compiled.history] == [s for s, _ in plain.history]
        for a, b in zip(compiled.params, plain.params):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)


def test_core_under_jit_and_grad(data):
    X, y = data
    p = nnbin.init_params(1, 8, seed=1, backend="jax")
    stepped = jax.jit(nnbin.step)(p, X, y, 1.0)
    eager = nnbin.step(p, X, y, 1.0)
    for a, b in zip(stepped, eager):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    g = jax.grad(nnbin.loss)(p, X, y)
    _, hand = nnbin.loss_and_grads(p, X, y)
    for a, b in zip(g, hand):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)
    loss, _ = jax.jit(nnbin.loss_and_grads)(p, X, y)
    assert loss.shape == ()


def test_vmap_trains_16_seeds_in_one_call(data):
    """16 models, 16 seeds, one compiled call; each equals its own single-model run."""
    X, y = data
    seeds = range(16)
    stacked = jax.tree.map(
        lambda *a: jnp.stack(a), *[nnbin.init_params(1, 8, seed=s, backend="jax") for s in seeds]
    )

    def train_one(p):
        return jax.lax.fori_loop(0, 100, lambda _, q: nnbin.step(q, X, y, 1.0), p)

    trained = jax.jit(jax.vmap(train_one))(stacked)
    losses = jax.vmap(lambda p: nnbin.loss(p, X, y))(trained)
    assert trained.W1.shape == (16, 1, 8) and losses.shape == (16,)
    for s in (0, 7, 15):
        single = nnbin.train(X, y, hidden=8, steps=100, seed=s, log_every=0)
        np.testing.assert_allclose(
            np.asarray(trained.W1[s]), np.asarray(single.params.W1), rtol=1e-4, atol=1e-5
        )
        assert float(losses[s]) == pytest.approx(single.final_loss, rel=1e-3)


def test_float64_without_x64_is_an_error_not_a_silent_float32():
    code = (
        "import nnbin\n"
        "X, y = nnbin.two_gaussians(n_per_class=10)\n"
        "try:\n"
        "    nnbin.train(X, y, steps=1, backend='jax', dtype='float64')\n"
        "except nnbin.BackendUnavailableError as e:\n"
        "    print('refused:', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "NNBIN_BACKEND")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:") and "JAX_ENABLE_X64=1" in out.stdout


def test_cli_float64_on_jax_switches_x64_on(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    env["NNBIN_BACKEND"] = "jax"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnbin",
            "train",
            "--dtype",
            "float64",
            "--steps",
            "200",
            "--no-plot",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "(jax, float64," in out.stdout


DATA_PARALLEL = """
import json, numpy as np, jax, nnbin
X, y = nnbin.two_gaussians(n_per_class=1000, seed=0)
one = nnbin.train(X, y, steps=300, log_every=100, backend="jax")
four = nnbin.train(X, y, steps=300, log_every=100, backend="jax", data_parallel=4)
assert len(jax.devices()) == 4
shards = {str(s.device) for s in four.params.W1.addressable_shards}
xs = jax.device_put(np.asarray(X, np.float32))
try:  # rows that do not split evenly: one InvalidInputError that says what to do
    nnbin.train(X[:-1], y[:-1], steps=1, backend="jax", data_parallel=4)
    uneven = "trained"
except nnbin.InvalidInputError as exc:
    uneven = str(exc)
print(json.dumps({
    "uneven": uneven,
    "devices": len(shards),
    "loss_one": [v for _, v in one.history], "loss_four": [v for _, v in four.history],
    "err": max(float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))
               for a, b in zip(four.params, one.params)),
}))
"""


def test_data_parallel_on_four_cpu_devices_matches_one_device():
    import json

    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env.pop("NNBIN_BACKEND", None)
    out = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["devices"] == 4  # the replicated parameters live on all four devices
    assert "1999 samples do not split evenly over 4 devices" in r["uneven"], r["uneven"]
    np.testing.assert_allclose(r["loss_four"], r["loss_one"], rtol=1e3 * 2**-23)
    assert r["err"] <= 1e4 * 2**-23  # the float32 whole-run tolerance of the suite


def test_data_parallel_errors_are_clear():
    X, y = nnbin.two_gaussians(n_per_class=5, seed=0)
    with pytest.raises(nnbin.BackendUnavailableError, match="JAX sees"):
        nnbin.train(X, y, steps=1, backend="jax", data_parallel=64)
    with pytest.raises(nnbin.BackendUnavailableError, match="no data-parallel"):
        nnbin.train(X, y, steps=1, backend="numpy", data_parallel=2)


def test_mini_batch_runs_compile_once_and_match_the_core(data):
    """A run of mini-batch epochs is one compiled function called once a chunk (the chunk's
    shuffled orders an argument), compiled once however many chunks the run takes, with
    the losses and parameters of the array-API core on NumPy."""
    X, y = data
    be = nnbin.get_backend("jax")
    options = dict(
        hidden=(6, 3),
        activation="tanh",
        optimizer="adam",
        lr=0.01,
        batch_size=96,
        steps=40,
        log_every=5,
        seed=3,
    )
    before = len(be._compiled)
    got = nnbin.train(X, y, **options)
    assert got.loop.startswith("jax.jit, one compiled call a chunk of epochs")
    compiled = len(be._compiled) - before
    assert compiled == 1, f"{compiled} compilations for one run"
    again = nnbin.train(X, y, **options)  # the same shapes and settings: nothing compiled
    assert len(be._compiled) - before == 1 and again.compile_seconds == 0.0
    ref = nnbin.train(np.asarray(X), np.asarray(y), backend="numpy", dtype="float32", **options)
    np.testing.assert_allclose([v for _, v in got.history], [v for _, v in ref.history], rtol=2e-5)
    for a, b in zip(got.params, ref.params, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=2e-4, atol=2e-5)


def test_deep_parameters_are_a_pytree_jax_jits_and_vmaps_over(data):
    """Eight (5, 3)-tanh networks, eight seeds, one vmapped and jitted Adam step each."""
    X, y = data
    stacked = tuple(
        jnp.stack(leaves)
        for leaves in zip(
            *(
                nnbin.init_params(1, (5, 3), seed=s, activation="tanh", backend="jax")
                for s in range(8)
            )
        )
    )
    opt = nnbin.Optimizer("adam", lr=0.01)

    def one(p):
        loss, g = nnbin.loss_and_grads(p, X, y, activation="tanh", alpha=0.1)
        new, _ = opt.update(p, g, opt.init(p))
        return loss, new

    losses, new = jax.jit(jax.vmap(one))(stacked)
    assert losses.shape == (8,) and [a.shape[0] for a in new] == [8] * 6
    for k in (0, 5):  # each slice is that seed's network, stepped on its own
        p = tuple(a[k] for a in stacked)
        loss, p1 = one(p)
        np.testing.assert_allclose(losses[k], loss, rtol=1e-5)
        for a, b in zip(new, p1, strict=True):
            np.testing.assert_allclose(a[k], b, rtol=1e-5, atol=1e-6)


def test_float64_data_training_in_float32_is_said_once():
    """Without JAX's 64-bit mode, float64 host data train in float32: one warning a process
    naming jax_enable_x64 (never silently), and the estimator's dtype_ says it (a fresh
    process: the mode is process-wide and other tests turn it on)."""
    import textwrap

    script = textwrap.dedent(
        """
        import warnings
        import numpy as np
        import nnbin
        X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            r = nnbin.train(X, y, backend="jax", steps=2, hidden=3)
            nnbin.train(X, y, backend="jax", steps=2, hidden=3)
        said = [str(w.message) for w in seen if "float64 data train in float32" in str(w.message)]
        assert len(said) == 1 and "jax_enable_x64" in said[0], said
        assert r.dtype == "float32"
        try:
            from nnbin.estimator import BinaryMLPClassifier
        except ImportError:
            print("ok")
        else:
            clf = BinaryMLPClassifier(max_iter=2, backend="jax").fit(X, y[:, 0])
            assert clf.dtype_ == "float32", clf.dtype_
            print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "NNBIN_BACKEND")}
    out = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_seeds_and_partial_fit_calls_compile_once():
    """A grid search's new random_state (None included) or a stream of partial_fit calls
    compiles nothing anew: the seed is in the shuffled orders, the step size and the
    optimizer state are arguments (compiles counted in the backend's cache)."""
    pytest.importorskip("sklearn")
    import warnings

    from nnbin.estimator import BinaryMLPClassifier

    be = nnbin.get_backend("jax")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BinaryMLPClassifier(backend="jax", random_state=0, max_iter=3).fit(X, y)
        before = len(be._compiled)
        for seed in (1, 2, None, None):
            BinaryMLPClassifier(backend="jax", random_state=seed, max_iter=3).fit(X, y)
        assert len(be._compiled) == before, "a new seed compiled anew"
        stream = BinaryMLPClassifier(backend="jax", random_state=0)
        stream.partial_fit(X[:60], y[:60], classes=[0, 1])
        after_first = len(be._compiled)
        for rows in (slice(60, None), slice(None, 60)) * 2:
            stream.partial_fit(X[rows], y[rows])
        assert len(be._compiled) == after_first, "a partial_fit call compiled anew"


def test_folds_a_few_rows_apart_compile_once():
    """Cross-validation's folds differ by a row or two, a grid search's settings by alpha:
    the rows are padded to one bucket with weight 0 and alpha is an argument, so every fold
    and setting runs the same compiled function (adam and L-BFGS), with the numbers of the
    unpadded run (the core, eagerly, on the same fold)."""
    pytest.importorskip("sklearn")
    import warnings

    from backends.jax import bucket
    from nnbin.estimator import BinaryMLPClassifier

    assert bucket(802, 200) == bucket(825, 200) == bucket(1000, 200) == 1000
    assert bucket(801) == bucket(825) == 832  # L-BFGS: full batch, 32 rows a bucket here
    assert bucket(1001, 200) > 1000 and bucket(20_000) - 20_000 < 20_000 / 16
    be = nnbin.get_backend("jax")

    def compiles() -> tuple[int, int]:  # compiled runs; L-BFGS evaluations jit traced
        return len(be._compiled), sum(f._cache_size() for f in be._evaluators.values())

    rng = np.random.default_rng(3)
    X = rng.normal(size=(900, 4)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for solver in ("adam", "lbfgs"):
            kw = {"solver": solver, "random_state": 0, "max_iter": 4, "hidden_layer_sizes": (8,)}
            BinaryMLPClassifier(backend="jax", **kw).fit(X[:801], y[:801])
            before = compiles()
            for n, alpha in ((802, 1e-4), (803, 1e-2), (825, 0.3)):
                fold = BinaryMLPClassifier(backend="jax", alpha=alpha, **kw).fit(X[:n], y[:n])
                core = BinaryMLPClassifier(backend="numpy", alpha=alpha, **kw).fit(X[:n], y[:n])
                np.testing.assert_allclose(fold.loss_curve_, core.loss_curve_, rtol=2e-4)
                np.testing.assert_allclose(
                    fold.predict_proba(X), core.predict_proba(X), rtol=1e-3, atol=1e-5
                )
            assert compiles() == before, f"{solver}: a fold or an alpha compiled anew"
