"""ONNX export: the graph nnbin's forward pass records on ndonnx arrays, run by onnxruntime,
against the NumPy backend; the command's bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import nnbin

ndx = pytest.importorskip("ndonnx", reason="ndonnx not installed: pip install 'nnbin[onnx]'")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from nnbin import export  # noqa: E402


def _run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X}), strict=True))


def _params(d, h, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    return nnbin.Params(
        rng.normal(0, scale, (d, h)).astype(dtype),
        rng.normal(0, scale, (h,)).astype(dtype),
        rng.normal(0, 5 * scale, (h, 1)).astype(
            dtype
        ),  # large: logits far beyond the sigmoid's range
        rng.normal(0, scale, (1,)).astype(dtype),
        activation="sigmoid",
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("d,h,scale", [(1, 32, 1.0), (3, 7, 2.0), (2, 5, 60.0), (1, 1, 400.0)])
def test_the_graph_matches_the_numpy_backend(tmp_path, dtype, d, h, scale):
    """Random inputs and weights, scaled up to saturating logits (|z| up to ~1e3 and
    beyond): probabilities within the dtype's rounding, labels identical."""
    params = _params(d, h, dtype, seed=d * 100 + h, scale=scale)
    path = tmp_path / "m.onnx"
    nnbin.export_onnx(params, path)
    onnx.checker.check_model(str(path), full_check=True)
    rng = np.random.default_rng(7)
    for n in (1, 17, 1000):  # any batch size: the first dimension is free
        X = rng.normal(0, 5 * scale, (n, d)).astype(dtype)
        got = _run(path, X)
        want = nnbin.predict_proba(params, X)
        z = nnbin.forward(params, X)
        assert got["probability"].dtype == np.dtype(dtype) and got["probability"].shape == (n, 1)
        assert got["label"].dtype == np.int64 and got["label"].shape == (n, 1)
        # onnxruntime adds the H products of a logit in its own order: a few ulps of z
        tol = 1e-5 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(got["probability"], want, rtol=tol, atol=tol)
        np.testing.assert_array_equal(got["label"], (z >= 0).astype(np.int64))
    if scale >= 60:  # the saturating cases were reached
        assert np.max(np.abs(z)) > (1e3 if scale >= 400 else 100)


def test_a_trained_model_exports_with_its_metadata(tmp_path):
    X, y = nnbin.two_gaussians(n_per_class=500, seed=0)
    result = nnbin.train(X, y, steps=200, log_every=100)
    nnbin.save(tmp_path / "m.safetensors", result)
    model = nnbin.load(tmp_path / "m.safetensors")
    nnbin.export_onnx(model.params, tmp_path / "m.onnx", metadata=export.model_metadata(model))
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["n_features"] == "1" and props["hidden"] == "32" and props["dtype"] == "float64"
    assert props["nnbin_version"] == nnbin.__version__ and props["trained_on_backend"] == "numpy"
    assert '"steps": 200' in props["training_settings"]
    got = _run(tmp_path / "m.onnx", X)
    assert float(np.mean(got["label"] == y)) == nnbin.accuracy(result.params, X, y) == 1.0


def test_parameters_of_another_backend_export_from_their_host_copy(tmp_path):
    xp = pytest.importorskip("array_api_strict")
    params = _params(2, 3, "float64", 1, 1.0)
    nnbin.export_onnx(
        nnbin.Params(*(xp.asarray(p) for p in params), activation="sigmoid"), tmp_path / "m.onnx"
    )
    X = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_allclose(
        _run(tmp_path / "m.onnx", X)["probability"], nnbin.predict_proba(params, X), rtol=1e-14
    )


def test_parameters_that_cannot_be_exported_are_refused(tmp_path):
    bad = _params(1, 2, "float64", 0, 1.0)._replace(b2=np.array([np.nan]))
    with pytest.raises(nnbin.ModelFileError, match="not all finite"):
        nnbin.export_onnx(bad, tmp_path / "m.onnx")
    mixed = _params(1, 2, "float64", 0, 1.0)._replace(b2=np.zeros(1, np.float32))
    with pytest.raises(nnbin.ModelFileError, match="one dtype"):
        nnbin.export_onnx(mixed, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def _cli(*args, cwd):
    env = {**os.environ, "NNBIN_BACKEND": ""}
    return subprocess.run(
        [sys.executable, "-m", "nnbin", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_the_export_command(tmp_path):
    X, y = nnbin.two_gaussians(n_per_class=200, seed=1)
    nnbin.save(tmp_path / "m.safetensors", nnbin.train(X, y, steps=50, dtype="float32"))
    out = _cli("export", "m.safetensors", "--onnx", "m.onnx", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "input X (N, 1) float32" in out.stdout
    got = _run(tmp_path / "m.onnx", X.astype("float32"))
    model = nnbin.load(tmp_path / "m.safetensors")
    np.testing.assert_allclose(
        got["probability"], nnbin.predict_proba(model.params, X.astype("float32")), rtol=1e-5
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["nope.safetensors", "--onnx", "o.onnx"], "nope.safetensors"),
        (["data.csv", "--onnx", "o.onnx"], "data.csv"),
        (["m.safetensors", "--onnx", "missing/o.onnx"], "missing"),
        (["m.safetensors", "--onnx", "m.safetensors"], "m.safetensors"),
        (["m.safetensors", "--onnx", "/dev/null"], "/dev/null"),
        (["m.safetensors"], "--onnx"),
    ],
)
def test_bad_export_arguments_are_one_line_and_change_nothing(tmp_path, args, message):
    X, y = nnbin.two_gaussians(n_per_class=50, seed=1)
    nnbin.save(tmp_path / "m.safetensors", nnbin.train(X, y, steps=5))
    (tmp_path / "data.csv").write_text("x,label\n1,0\n2,1\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    out = _cli("export", *args, cwd=tmp_path)
    assert out.returncode == 2, out
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_without_the_extra_the_command_names_it(tmp_path, monkeypatch):
    from nnbin.cli import main

    monkeypatch.setattr(export, "PACKAGES", ("ndonnx", "no_such_package_here"))
    assert main(["export", "m.safetensors", "--onnx", "o.onnx"]) == 2
    with pytest.raises(nnbin.MissingDependencyError, match=r"pip install 'nnbin\[onnx\]'"):
        nnbin.export_onnx(_params(1, 2, "float64", 0, 1.0), tmp_path / "m.onnx")


# --- nothing is exported that could not run ----------------------------------------------


def test_the_documented_alias_and_an_unknown_activation(tmp_path):
    p = nnbin.init_params(1, 3, seed=0)
    export.export_onnx(p, tmp_path / "a.onnx", activation="logistic")  # scikit-learn's name
    with pytest.raises(nnbin.InvalidInputError, match="activation must be one of sigmoid"):
        export.export_onnx(p, tmp_path / "b.onnx", activation="softmax")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.onnx"]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p._replace(b1=np.ones(4)), "b1 must have shape (3,)"),
        (lambda p: p._replace(W2=np.ones((2, 1))), "W2 must have shape (3, 1)"),
        (lambda p: p._replace(b2=np.ones(2)), "b2 must have shape (1,)"),
        (lambda p: p._replace(W1=np.ones(3)), "W1 must have shape (D, H)"),
        (lambda p: (*p, np.ones((1, 1))), "params must be nnbin.Params"),
        (lambda p: "params", "params must be nnbin.Params"),
    ],
)
def test_parameters_that_do_not_fit_together_are_refused_before_any_graph(make, needle, tmp_path):
    p = nnbin.init_params(1, 3, seed=0)
    with pytest.raises(nnbin.InvalidInputError) as info:
        export.export_onnx(make(p), tmp_path / "m.onnx")
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_network_without_a_hidden_layer_exports(tmp_path):
    """hidden=() (logistic regression): the graph gives sigmoid(X W + b), written out here
    in NumPy, and says it has no hidden layer."""
    rng = np.random.default_rng(3)
    W, b = rng.normal(0, 2, (3, 1)), rng.normal(0, 1, (1,))
    path = tmp_path / "lr.onnx"
    nnbin.export_onnx((W, b), path, activation="sigmoid")  # a bare tuple says it
    onnx.checker.check_model(str(path), full_check=True)
    X = rng.normal(0, 3, (50, 3))
    got = _run(path, X)
    np.testing.assert_allclose(got["probability"], 1 / (1 + np.exp(-(X @ W + b))), rtol=1e-13)
    np.testing.assert_array_equal(got["label"], (X @ W + b >= 0).astype(np.int64))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["hidden"] == "0" and meta["hidden_layers"] == "[]"
