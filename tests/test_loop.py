"""The one training loop (nnbin/loop.py): its schedule covers every step once and logs
exactly the steps it should, however many steps a call holds; the steps a call holds never
change the numbers; the stopping rule is one function, the same on the host and in JAX."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnbin
from nnbin.loop import MAX_LOGS, next_call
from nnbin.rules import StopRule, stop_update


def _schedule(steps: int, every: int, k: int) -> list[tuple[int, int, int]]:
    """The calls the loop makes: (first step, steps, every)."""
    calls, s = [], 0
    while s < steps:
        n, logs = next_call(s, steps, every, k)
        calls.append((s, n, logs))
        s += n
    return calls


@given(st.integers(0, 3000), st.integers(0, 400), st.integers(1, 5000))
def test_the_calls_cover_every_step_once_and_log_exactly_the_multiples(steps, every, k):
    calls = _schedule(steps, every, k)
    assert sum(n for _, n, _ in calls) == steps
    logged = [s + i for s, n, logs in calls if logs for i in range(0, n, logs)]
    assert logged == ([s for s in range(0, steps, every)] if every else [])
    for s, n, logs in calls:
        assert 1 <= n <= max(k, 1) or (logs and n <= k // logs * logs)
        assert not logs or (s % logs == 0 and math.ceil(n / logs) <= MAX_LOGS)


X, Y = nnbin.two_gaussians(n_per_class=200, seed=1)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"hidden": (5, 3), "optimizer": "adam", "lr": 0.01, "batch_size": 64, "steps": 30},
        {"optimizer": "momentum", "lr": 0.05, "batch_size": 100, "n_iter_no_change": 2},
    ],
    ids=["seed-kind", "adam-batches", "stopping-rule"],
)
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_the_steps_a_call_holds_never_change_the_numbers(backend, options):
    if backend == "jax":
        pytest.importorskip("jax")
    kw = {"steps": 120, "log_every": 7, "backend": backend, "dtype": "float32", **options}
    want = nnbin.train(X, Y, **kw)
    for per_call in (1, 3, 64):
        got = nnbin.train(X, Y, steps_per_call=per_call, **kw)
        assert got.history == want.history and got.n_iter == want.n_iter
        for a, b in zip(got.params, want.params):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@settings(deadline=None, max_examples=40)
@given(
    st.lists(st.floats(0.0, 2.0), min_size=1, max_size=40),
    st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40),
    st.booleans(),
)
def test_the_host_rule_matches_the_traced_one(losses, scores, early):
    """StopRule (NumPy scalars) and stop_update under jax.jit (float64, in a context: the
    process's setting is left alone) stop at the same epoch."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rule = StopRule(early, 0.01, 3)
    kw = {"early": early, "tol": 0.01, "patience": 3}
    with jax.enable_x64(True):
        step = jax.jit(lambda *a: stop_update(jnp, *a, **kw))
        state = (jnp.asarray(0), jnp.asarray(math.inf), jnp.asarray(-math.inf))
        for loss, score in zip(losses, scores):
            host_stop = rule.update(loss, score if early else None, ())
            count, best_loss, best_score, _, stop = step(
                *state, jnp.asarray(loss), jnp.asarray(score)
            )
            state = (count, best_loss, best_score)
            assert bool(stop) == host_stop and int(count) == rule.count
            if host_stop:
                break
