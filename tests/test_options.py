"""The options table (nnbin/options.py) against its three entry points: every option's
refused values are refused by nnbin.train, by ``nnbin train`` and by BinaryMLPClassifier
with one InvalidInputError line that names the option as that entry point's user spells it,
the same words otherwise; its default and its boundary values are accepted by all three."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import nnbin
from nnbin import options
from nnbin.cli import main
from nnbin.options import MAX_LAYERS

X, Y = nnbin.two_gaussians(n_per_class=10, seed=0)
QUICK = {"steps": 1, "log_every": 0}
CLI_QUICK = ["--no-plot", "--quiet", "--n-per-class", "10"]

CASES = [
    (name, value, text)
    for name, o in options.OPTIONS.items()
    for value, text in o.constraint.refused()
]


def _shown(name: str, value: object) -> str:
    """The name the message starts with: a bad width inside a sequence is "every hidden
    width" (hidden, hidden_layer_sizes); a sequence too long is the option's own."""
    inside = isinstance(value, tuple) and 0 < len(value) <= MAX_LAYERS
    return "every hidden width" if inside else name


def _api_message(name: str, value: object) -> str:
    with pytest.raises(nnbin.InvalidInputError) as info:
        nnbin.train(X, Y, **{**QUICK, name: value})
    return str(info.value)


@pytest.mark.parametrize("name, value, text", CASES, ids=[f"{c[0]}={c[1]!r}" for c in CASES])
def test_api_refuses_each_bad_value_in_one_line(name, value, text):
    message = _api_message(name, value)
    assert message.startswith(f"{_shown(name, value)} must be"), message
    assert "got" in message and "\n" not in message


@pytest.mark.parametrize(
    "name, value, text",
    [c for c in CASES if c[2] is not None and options.OPTIONS[c[0]].cli is not None],
    ids=lambda v: str(v),
)
def test_command_line_refuses_with_the_api_message(name, value, text, capsys):
    flag = options.OPTIONS[name].cli
    with pytest.raises(SystemExit) as exc:
        main(["train", *CLI_QUICK, flag, text])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1, err
    assert f"argument {flag}: {_api_message(name, value)}" in err, err


SKLEARN_CASES = [
    (o.sklearn, name, value)
    for name, value, _ in CASES
    for o in [options.OPTIONS[name]]
    # random_state and batch_size take scikit-learn's own values besides ours (None,
    # "auto"), checked in tests/test_estimator.py
    if o.sklearn and o.sklearn not in ("random_state", "batch_size")
]


@pytest.mark.parametrize("sk, name, value", SKLEARN_CASES, ids=lambda v: str(v))
def test_estimator_refuses_with_the_api_message_under_its_own_name(sk, name, value):
    pytest.importorskip("sklearn")
    clf = nnbin.BinaryMLPClassifier(**{"max_iter": 1, sk: value})
    with pytest.raises(nnbin.InvalidInputError) as info:
        clf.fit(X, Y.ravel())
    message = str(info.value)
    if options.OPTIONS[name].sklearn_values:  # scikit-learn's own values (solver='sgd')
        assert message.startswith(f"{sk} must be one of"), message
        return
    api = _api_message(name, value)
    assert message == api.replace(_shown(name, value), _shown(sk, value), 1), (message, api)


def _accepted(o: options.Option) -> list[object]:
    """The default, and the ends of an interval that belong to it."""
    c, out = o.constraint, [o.default]
    if isinstance(c, options.Whole):
        out.append(c.low)
    if isinstance(c, options.Real) and c.closed in ("both", "left"):
        out.append(c.low)
    if isinstance(c, options.Real) and c.closed in ("both", "right") and c.high != math.inf:
        out.append(c.high)
    return out


ACCEPTED = [
    (name, value)
    for name, o in options.OPTIONS.items()
    for value in _accepted(o)
    if name not in ("steps", "log_every", "backend", "dtype")  # the quick run's own
]


def _where_it_acts(name: str) -> tuple[dict[str, object], list[str], dict[str, object]]:
    """What makes option ``name`` take effect (nesterov: the momentum optimizer), for the API,
    the command line and the estimator; nothing for an option that always acts."""
    if name not in options.ACTS_ONLY_WITH:
        return {}, [], {}
    on, acting = options.ACTS_ONLY_WITH[name]
    value, dep = acting[0], options.OPTIONS[on]
    cli = [dep.cli] if isinstance(dep.constraint, options.Flag) else [dep.cli, str(value)]
    sk_value = {v: k for k, v in dep.sklearn_values.items()}.get(value, value)
    return {on: value}, cli, {dep.sklearn: sk_value}


@pytest.mark.parametrize("name, value", ACCEPTED, ids=lambda v: str(v))
def test_each_entry_point_accepts_the_default_and_the_interval_ends(name, value, capsys):
    o = options.OPTIONS[name]
    if name == "data_parallel" and value is not False:
        pytest.skip("data-parallel training is the jax backend's (tests/test_jax.py)")
    api, cli, sk = _where_it_acts(name)
    result = nnbin.train(X, Y, **{**QUICK, **api, name: value})
    assert math.isfinite(result.final_loss)
    flag = o.cli
    if flag is not None and value != o.default and not isinstance(value, bool):
        assert main(["train", *CLI_QUICK, "--steps", "1", *cli, flag, f"{value}"]) == 0
    if o.sklearn and o.sklearn not in ("random_state", "batch_size", "solver"):
        pytest.importorskip("sklearn")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one epoch: not converged, by design
            nnbin.BinaryMLPClassifier(max_iter=1, **sk, **{o.sklearn: value}).fit(X, Y.ravel())
    capsys.readouterr()


def test_unknown_option_names_the_closest():
    with pytest.raises(nnbin.InvalidInputError, match="no option 'lrr'; did you mean 'lr'"):
        nnbin.train(X, Y, lrr=0.1)


def test_train_signature_and_docs_come_from_the_table():
    import inspect

    sig = inspect.signature(nnbin.train)
    for name, o in options.OPTIONS.items():
        assert sig.parameters[name].default == o.default or (
            o.default is None and sig.parameters[name].default is None
        )
        assert f"    {name} (" in (nnbin.train.__doc__ or "")
    assert np.isfinite(nnbin.train(X, Y, **QUICK).final_loss)


@pytest.mark.parametrize("name", list(options.ACTS_ONLY_WITH))
def test_an_option_that_cannot_take_effect_is_refused_and_the_estimator_ignores_it(name, capsys):
    """``--nesterov`` with gradient descent, ``--validation-fraction`` without early
    stopping, Adam's betas with momentum: refused by the API and the command line (never
    silently ignored); the estimator ignores them, as scikit-learn does."""
    o = options.OPTIONS[name]
    switch = (options.Flag, options.Tristate)  # one flag, no value, on the command line
    if isinstance(o.constraint, switch):
        value: Any = not o.default  # a tristate's None: True
    elif isinstance(o.constraint, options.Choice):
        value = next(v for v in o.constraint.values if v != o.default)
    elif isinstance(o.constraint, options.Whole):
        value = int(o.constraint.low) + 3
    else:
        value = o.constraint.low / 2 + 0.25
    on, acting = options.ACTS_ONLY_WITH[name]
    dep = options.OPTIONS[on]
    choices = getattr(dep.constraint, "values", (True, False))
    other = next(v for v in reversed(choices) if v not in acting)  # one scikit-learn knows
    with pytest.raises(nnbin.InvalidInputError) as info:
        nnbin.train(X, Y, **{**QUICK, on: other, name: value})
    message = str(info.value)
    assert message.startswith(f"{name}={value!r}") and "cannot take effect" in message, message
    assert "\n" not in message
    if o.cli is not None:  # samples_seen is the API's and the estimator's only
        args = [o.cli] if isinstance(o.constraint, switch) else [o.cli, str(value)]  # --no-x
        dep_args = [] if isinstance(dep.constraint, options.Flag) else [dep.cli, str(other)]
        if isinstance(dep.constraint, options.Tristate):  # its one flag sets the other value
            assert other is dep.constraint.flag_sets
            dep_args = [dep.cli]
        assert main(["train", *CLI_QUICK, "--steps", "1", *dep_args, *args]) == 2
        err = capsys.readouterr().err
        assert "cannot take effect" in err and len(err.strip().splitlines()) == 1, err
    if o.sklearn:
        pytest.importorskip("sklearn")
        sk = {v: k for k, v in dep.sklearn_values.items()}.get(other, other)
        clf = nnbin.BinaryMLPClassifier(max_iter=1, **{dep.sklearn: sk, o.sklearn: value})
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert clf.fit(X, Y.ravel()).n_iter_ == 1


def test_the_switches_once_read_from_the_environment_are_options_with_their_defaults_there(
    monkeypatch,
):
    """NNBIN_CUDA_GRAPHS and NNBIN_CUDA_FAST_MATH are the defaults of two options declared in
    the table (fused_graphs, fast_math), read at each run; a default the environment set is
    not the caller's asking (fused=False with NNBIN_CUDA_FAST_MATH=1 runs), one the caller
    sets is checked as any option. NNBIN_CORE_GRAPHS is declared on cuda_graphs' row."""
    from nnbin.options import Config

    assert Config().fused_graphs is True and Config().fast_math is False
    monkeypatch.setenv("NNBIN_CUDA_GRAPHS", "0")
    monkeypatch.setenv("NNBIN_CUDA_FAST_MATH", "1")
    assert Config().fused_graphs is False and Config().fast_math is True
    assert options.resolve({})["fast_math"] is True
    assert np.isfinite(nnbin.train(X, Y, **QUICK, fused=False).final_loss)
    with pytest.raises(nnbin.InvalidInputError, match=r"fast_math=False .* cannot take effect"):
        nnbin.train(X, Y, **QUICK, fused=False, fast_math=False)
    monkeypatch.setenv("NNBIN_CUDA_FAST_MATH", "0")
    assert Config().fast_math is False
    assert options.OPTIONS["cuda_graphs"].env == "NNBIN_CORE_GRAPHS"


def test_an_invscaling_step_size_that_leaves_the_float_range_is_one_error(capsys):
    """power_t=1000: lr / (t + 1)^power_t overflows Python's float power (an OverflowError
    traceback before) or underflows to a step size of 0; either is one InvalidInputError
    naming power_t, from the API and one line from the command line."""
    kw = dict(optimizer="gd", batch_size=100, learning_rate="invscaling", steps=3)
    with pytest.raises(nnbin.InvalidInputError, match=r"power_t=1000 .*underflow to 0"):
        nnbin.train(X, Y, **kw, power_t=1000.0)
    with pytest.raises(nnbin.InvalidInputError, match=r"power_t=20 .*underflow to 0"):
        nnbin.train(X, Y, **kw, lr=1e-300, power_t=20.0)  # no overflow: 1e-300 / 21^20 is 0
    assert np.isfinite(nnbin.train(X, Y, **kw, power_t=20.0).final_loss)  # tiny, not 0
    args = ["train", *CLI_QUICK, "--steps", "3", "--batch-size", "100"]
    assert main([*args, "--lr-schedule", "invscaling", "--power-t", "1000"]) == 2
    err = capsys.readouterr().err
    assert "underflow to 0" in err and len(err.strip().splitlines()) == 1, err


def test_the_optimizer_class_refuses_lbfgs_when_built():
    """nnbin.Optimizer("lbfgs") built and then raised a bare TypeError at update: refused
    at once, saying where L-BFGS is."""
    with pytest.raises(nnbin.InvalidInputError, match="optimizer='lbfgs'"):
        nnbin.Optimizer("lbfgs")
