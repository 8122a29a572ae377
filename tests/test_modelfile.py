"""Model files: safetensors with metadata, atomic saves, loading onto any backend."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import nnbin
from nnbin.cli import main
from nnbin.modelfile import FORMAT_VERSION


@pytest.fixture(scope="module")
def trained():
    X, y = nnbin.two_gaussians(n_per_class=200, seed=0)
    return X, y, nnbin.train(X, y, hidden=6, steps=120, log_every=40, seed=2, backend="numpy")


def test_roundtrip_keeps_parameters_and_metadata(tmp_path, trained):
    _, _, result = trained
    path = tmp_path / "m.safetensors"
    nnbin.save(path, result)
    model = nnbin.load(path, backend="numpy")
    for a, b in zip(model.params, result.params):
        np.testing.assert_array_equal(a, b)
    assert (model.n_features, model.hidden, model.dtype) == (1, 6, "float64")
    assert model.backend == "numpy" and model.nnbin_version == nnbin.__version__
    assert model.history == result.history and model.final_loss == result.final_loss
    assert model.settings["steps"] == 120 and model.settings["lr"] == 1.0
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == ["W1", "W2", "b1", "b2"]
    # a seed-kind model (one sigmoid layer) is written as format 1: every nnbin reads it
    assert meta["format"] == "nnbin-model" and meta["format_version"] == "1"
    assert "hidden_layers" not in meta and "activation" not in meta
    assert json.loads(meta["history"]) == [list(h) for h in result.history]


def test_deep_model_roundtrip_keeps_architecture(tmp_path):
    X, y = nnbin.two_gaussians(200, seed=1)
    result = nnbin.train(
        X,
        y,
        hidden=(5, 3),
        activation="tanh",
        optimizer="adam",
        lr=0.05,
        steps=20,
        batch_size=64,
        backend="numpy",
    )
    path = tmp_path / "deep.safetensors"
    nnbin.save(path, result)
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    assert meta["format_version"] == str(FORMAT_VERSION) == "2"
    assert json.loads(meta["hidden_layers"]) == [5, 3] and meta["activation"] == "tanh"
    model = nnbin.load(path, backend="numpy")
    assert model.hidden == (5, 3) and model.activation == "tanh"
    assert model.settings["optimizer"] == "adam" and model.settings["batch_size"] == 64
    for a, b in zip(model.params, result.params, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        nnbin.predict_proba(model.params, X, activation=model.activation),
        nnbin.predict_proba(result.params, X, activation="tanh"),
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"hidden_layers": "[5, 4]"}, "W2 has shape"),
        ({"hidden_layers": "[5]"}, "holds arrays"),
        ({"hidden_layers": "[]"}, "impossible shapes"),  # no layer, but hidden says one
        ({"hidden_layers": "[5, true]"}, "hidden_layers must list"),
        ({"hidden_layers": "[" + "1, " * 100 + "1]"}, "hidden_layers must list"),
        ({"hidden_layers": "[4, 3]"}, "impossible shapes"),
        ({"activation": "softsign"}, "unknown activation"),
        ({"format_version": "3"}, "newer nnbin"),
    ],
)
def test_deep_model_metadata_is_checked(tmp_path, edit, message):
    """Every architecture field is checked against the arrays before anything is built."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    arrays = {
        "W1": rng.normal(size=(1, 5)),
        "b1": np.zeros(5),
        "W2": rng.normal(size=(5, 3)),
        "b2": np.zeros(3),
        "W3": rng.normal(size=(3, 1)),
        "b3": np.zeros(1),
    }
    meta = {
        "format": "nnbin-model",
        "format_version": "2",
        "n_features": "1",
        "hidden": "5",
        "hidden_layers": "[5, 3]",
        "activation": "relu",
        "dtype": "float64",
    }
    path = tmp_path / "m.safetensors"
    save_file(arrays, str(path), metadata=meta)
    assert nnbin.load(path).hidden == (5, 3)  # the unedited file loads
    save_file(arrays, str(path), metadata={**meta, **edit})
    with pytest.raises(nnbin.ModelFileError, match=message):
        nnbin.load(path)


@pytest.mark.parametrize("target", ["strict", "jax", "torch"])
def test_saved_on_numpy_predicts_the_same_on_another_backend(tmp_path, trained, target):
    X, _, result = trained
    path = tmp_path / "m.safetensors"
    nnbin.save(path, result)
    try:
        be = nnbin.get_backend(target)
    except nnbin.NnbinError as exc:
        pytest.skip(f"{target} not runnable here: {exc}")
    if target == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    model = nnbin.load(path, backend=target)
    assert all(be.owns(p) for p in model.params)
    got = be.to_host(nnbin.predict_proba(model.params, be.asarray(X, model.dtype)))
    np.testing.assert_allclose(got, nnbin.predict_proba(result.params, X), rtol=1e-12)


def test_saved_on_jax_float32_loads_on_numpy(tmp_path):
    jax = pytest.importorskip("jax")
    X, y = nnbin.two_gaussians(n_per_class=100, seed=0)
    result = nnbin.train(
        jax.numpy.asarray(X, "float32"), jax.numpy.asarray(y, "float32"), hidden=4, steps=50
    )
    nnbin.save(tmp_path / "j.safetensors", result)
    model = nnbin.load(tmp_path / "j.safetensors", backend="numpy")
    assert model.dtype == "float32" and model.backend == "jax"
    got = nnbin.predict_proba(model.params, X.astype(np.float32))
    want = np.asarray(nnbin.predict_proba(result.params, jax.numpy.asarray(X, "float32")))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_a_pickle_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "executed"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(nnbin.ModelFileError, match="pickle"):
        nnbin.load(path)
    assert not marker.exists()


def test_interrupted_save_leaves_the_previous_file_intact(tmp_path, trained):
    """Kill a process in the middle of writing: the old model file is untouched."""
    _, _, result = trained
    path = tmp_path / "m.safetensors"
    nnbin.save(path, result)
    before = path.read_bytes()
    code = f"""
import os, signal, nnbin, nnbin.modelfile as mf
X, y = nnbin.two_gaussians(n_per_class=50, seed=1)
r = nnbin.train(X, y, hidden=3, steps=5)
real_fsync = os.fsync
def die(fd):
    os.kill(os.getpid(), signal.SIGKILL)   # killed after writing, before the rename
os.fsync = die
mf.save_result({str(path)!r}, r)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == -9, out.stderr
    assert path.read_bytes() == before
    nnbin.load(path)  # still a valid model


def test_non_finite_parameters_are_not_saved(tmp_path, trained):
    _, _, result = trained
    bad = nnbin.Model(
        nnbin.Params(result.params.W1 * np.nan, *result.params[1:], activation="sigmoid"), "float64"
    )
    with pytest.raises(nnbin.ModelFileError, match="finite"):
        nnbin.save(tmp_path / "bad.safetensors", bad)
    assert not list(tmp_path.iterdir())


def test_written_files_get_ordinary_permissions(tmp_path, trained):
    """Atomic writes go through a private temporary file; the result must not stay 0600."""
    import os

    _, _, result = trained
    umask = os.umask(0o022)
    try:
        nnbin.save(tmp_path / "m.safetensors", result)
    finally:
        os.umask(umask)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644


# --- bad model files: one ModelFileError each, nothing executed --------------------------

X0, Y0 = nnbin.two_gaussians(n_per_class=20, seed=0)


def _rewrite_header(raw: bytes, change) -> bytes:
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    change(header)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def _meta(key, value):
    return lambda h: h["__metadata__"].__setitem__(key, value)


def _shape(name, shape):
    return lambda h: h[name].__setitem__("shape", shape)


def _resave(raw: bytes, change) -> bytes:
    from safetensors.numpy import load, save

    n = struct.unpack("<Q", raw[:8])[0]
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    arrays = load(raw)
    change(arrays)
    return save(arrays, metadata=meta)


def _without_b2(raw):
    return _resave(raw, lambda a: a.pop("b2"))


def _with_nan(raw):
    return _resave(raw, lambda a: a.__setitem__("W1", a["W1"] * np.nan))


FILE_CASES = {
    "missing file": (None, "cannot read model file"),
    "empty file": (lambda raw: b"", "not an nnbin model file"),
    "truncated file": (lambda raw: raw[: len(raw) // 2], "truncated"),
    "corrupted header": (lambda raw: raw[:8] + b"{not json" + raw[17:], "corrupted"),
    "a text file": (lambda raw: b"W1,b1\n1,2\n" * 20, "not a safetensors file"),
    "a pickle": (lambda raw: pickle.dumps({"W1": [1.0]}), "never unpickles"),
    "safetensors, not nnbin": (
        lambda raw: _rewrite_header(raw, lambda h: h.pop("__metadata__")),
        "not an nnbin model",
    ),
    "newer format version": (
        lambda raw: _rewrite_header(raw, _meta("format_version", "99")),
        "newer nnbin",
    ),
    "wrong-shaped parameter": (lambda raw: _rewrite_header(raw, _meta("hidden", "4")), "expected"),
    "wrong dtype": (
        lambda raw: _rewrite_header(raw, _meta("dtype", "float32")),
        "metadata says float32",
    ),
    "unsupported dtype": (
        lambda raw: _rewrite_header(raw, _meta("dtype", "int8")),
        "unsupported dtype",
    ),
    "array missing": (lambda raw: _without_b2(raw), "expected ['W1', 'b1', 'W2', 'b2']"),
    "NaN in a parameter": (lambda raw: _with_nan(raw), "NaN or infinite"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_model_file(case, workdir):
    folder, snapshot = workdir
    make, needle = FILE_CASES[case]
    path = folder / "bad.safetensors"
    if make is not None:
        path.write_bytes(make((folder / "keep.safetensors").read_bytes()))
    before = snapshot()
    with pytest.raises(nnbin.ModelFileError) as info:
        nnbin.load(path)
    assert needle in str(info.value), str(info.value)
    assert snapshot() == before
    # and from the command line: one line, exit status 2
    assert main(["predict", "--model", str(path), "--data", "good.csv"]) == 2
    assert snapshot() == before


def test_loading_never_executes_a_pickle(tmp_path):
    marker = tmp_path / "pwned"
    code = f"import os; os.system('touch {marker}')"

    class Evil:
        def __reduce__(self):
            return (exec, (code,))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(nnbin.ModelFileError):
        nnbin.load(path)
    assert not marker.exists()


def _model_bytes(meta_changes=None, header_changes=None, drop_meta=()):
    """A valid nnbin model file's bytes, with its header edited."""
    import io

    buf = io.BytesIO()
    path = "m.safetensors"
    nnbin.save(path, nnbin.train(X0, Y0, hidden=3, steps=2))
    with open(path, "rb") as fh:
        raw = fh.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    for k in drop_meta:
        header["__metadata__"].pop(k)
    header["__metadata__"].update(meta_changes or {})
    header.update(header_changes or {})
    text = json.dumps(header).encode()
    buf.write(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    return buf.getvalue()


NO_LAYER_SAID = {"format_version": "2", "hidden": "0", "hidden_layers": "[]", "activation": "relu"}


@pytest.mark.parametrize(
    "case, edit, needle",
    [
        ("metadata a list", dict(header_changes={"__metadata__": ["a"]}), "metadata must map"),
        ("metadata with a number", dict(meta_changes={"hidden": 3}), "metadata must map"),
        (
            "format version 1e400",
            dict(meta_changes={"format_version": "1e400"}),
            "format_version must be a whole number >= 1",
        ),
        ("hidden 0", dict(meta_changes={"hidden": "0"}), "impossible shapes"),
        ("no hidden layer said, one held", dict(meta_changes=NO_LAYER_SAID), "holds arrays"),
        ("hidden missing", dict(drop_meta=("hidden",)), "field\\(s\\) hidden are missing"),
        ("dtype BF16 in metadata", dict(meta_changes={"dtype": "bfloat16"}), "unsupported dtype"),
        ("settings a list", dict(meta_changes={"settings": "[1, 2]"}), "unreadable training"),
        (
            "final loss 1e400 text",
            dict(meta_changes={"final_loss": '"big"'}),
            "unreadable training",
        ),
        (
            "history of strings",
            dict(meta_changes={"history": '[["a", "b"]]'}),
            "unreadable training",
        ),
        (
            "deeply nested settings",
            dict(meta_changes={"settings": "[" * 100_000 + "]" * 100_000}),
            "unreadable training",
        ),
        (
            "a tensor beyond the file",
            dict(
                header_changes={
                    "W1": {"dtype": "F64", "shape": [1, 3], "data_offsets": [0, 10**12]}
                }
            ),
            "declares 1,000,000,000,000 bytes of tensors",
        ),
        (
            "a tensor without offsets",
            dict(header_changes={"W1": {"dtype": "F64"}}),
            "no valid data_offsets",
        ),
    ],
)
def test_malformed_model_metadata_is_one_model_file_error(
    case, edit, needle, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_model_bytes(**edit))
    with pytest.raises(nnbin.ModelFileError, match=needle):
        nnbin.load(bad)


# --- what nnbin writes it reads, and a file that does not say what it holds is refused ----


def test_the_deepest_network_round_trips_and_one_layer_more_is_refused_before_training(
    tmp_path,
):
    from nnbin.options import MAX_LAYERS

    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    deepest = nnbin.train(X, y, hidden=(2,) * MAX_LAYERS, activation="relu", steps=1)
    path = tmp_path / "deep.safetensors"
    nnbin.save(path, deepest)
    back = nnbin.load(path)
    assert back.hidden == (2,) * MAX_LAYERS and back.activation == "relu"
    for a, b in zip(back.params, deepest.params):
        np.testing.assert_array_equal(a, b)
    for too_deep in ((2,) * (MAX_LAYERS + 1), [1] * (MAX_LAYERS + 7)):
        with pytest.raises(nnbin.InvalidInputError, match=f"at most {MAX_LAYERS} hidden layers"):
            nnbin.train(X, y, hidden=too_deep, steps=1)
        with pytest.raises(nnbin.InvalidInputError, match=f"at most {MAX_LAYERS} hidden layers"):
            nnbin.init_params(1, too_deep)
    # parameters built by hand one layer deeper: refused before anything is written
    extra = (*deepest.params[:-2], np.ones((2, 2)), np.zeros(2), *deepest.params[-2:])
    with pytest.raises(nnbin.ModelFileError, match=f"reads at most {MAX_LAYERS}"):
        nnbin.save(
            tmp_path / "deeper.safetensors", nnbin.Model(extra, "float64", activation="relu")
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.safetensors"]


def test_a_network_without_a_hidden_layer_round_trips(tmp_path):
    """hidden=() (logistic regression) is written as format 2 with hidden 0 and no layers,
    and reads back as the same network on another backend."""
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    result = nnbin.train(X, y, hidden=(), steps=5, lr=0.5)
    path = tmp_path / "lr.safetensors"
    nnbin.save(path, result)
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == ["W1", "b1"]
    assert meta["format_version"] == "2" and meta["hidden"] == "0"
    assert json.loads(meta["hidden_layers"]) == []
    back = nnbin.load(path, backend="strict")
    assert back.hidden == () and back.n_features == 1
    for a, b in zip(back.params, result.params, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def _format_2_bytes(tmp_path) -> bytes:
    X, y = nnbin.two_gaussians(n_per_class=20, seed=0)
    path = tmp_path / "f2.safetensors"
    nnbin.save(path, nnbin.train(X, y, hidden=(3, 2), activation="relu", steps=2))
    return path.read_bytes()


def _drop(key):
    return lambda h: h["__metadata__"].pop(key)


def _tensor_dtype(name, kind):
    return lambda h: h[name].__setitem__("dtype", kind)


def _as_float16(raw: bytes) -> bytes:
    return _resave(raw, lambda a: a.update({k: v.astype(np.float16) for k, v in a.items()}))


HEADER_CASES = {
    "format 2 without its activation": (_drop("activation"), "activation are missing"),
    "format 2 without its hidden_layers": (_drop("hidden_layers"), "hidden_layers are missing"),
    "format 2 without n_features": (_drop("n_features"), "n_features are missing"),
    "no format_version": (_drop("format_version"), "format_version is missing"),
    "format_version -5": (_meta("format_version", "-5"), "whole number >= 1, got '-5'"),
    "format_version 0": (_meta("format_version", "0"), "whole number >= 1, got '0'"),
    "format_version 1.5": (_meta("format_version", "1.5"), "got '1.5'"),
    "format_version empty": (_meta("format_version", ""), "got ''"),
    "a bfloat16 tensor": (_tensor_dtype("W1", "BF16"), "'W1' is BF16; nnbin reads float32"),
    "a float8 tensor": (_tensor_dtype("b2", "F8_E4M3"), "'b2' is F8_E4M3"),
    "an integer tensor": (_tensor_dtype("W2", "I64"), "'W2' is I64"),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_a_model_file_that_does_not_say_what_it_holds_is_refused(case, tmp_path):
    change, needle = HEADER_CASES[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_rewrite_header(_format_2_bytes(tmp_path), change))
    with pytest.raises(nnbin.ModelFileError) as info:
        nnbin.load(path)
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_float16_model_file_names_its_dtype(tmp_path):
    path = tmp_path / "half.safetensors"
    path.write_bytes(_as_float16(_format_2_bytes(tmp_path)))
    with pytest.raises(nnbin.ModelFileError, match=r"'W1' is F16; nnbin reads float32 and float64"):
        nnbin.load(path)
