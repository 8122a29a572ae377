"""Every bad input gets one clear error: the message, the exception type or exit status,
and no file changed. The README's "Bad input" table lists these cases."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import nnbin
from nnbin.cli import main
from nnbin.validate import InvalidInputError


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with good data and a saved model; snapshot() proves nothing changed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NNBIN_BACKEND", raising=False)
    X, y = nnbin.two_gaussians(n_per_class=50, seed=0)
    np.savetxt("good.csv", np.column_stack([X, y]), delimiter=",", header="x,label", comments="")
    nnbin.save("keep.safetensors", nnbin.train(X, y, hidden=3, steps=5))

    def snapshot():
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.iterdir())
        }

    return tmp_path, snapshot


X0, Y0 = nnbin.two_gaussians(n_per_class=20, seed=0)

API_CASES = {
    "X is 1-D": (lambda: nnbin.train(X0[:, 0], Y0), InvalidInputError, "reshape(-1, 1)"),
    "X is 3-D": (lambda: nnbin.train(X0[:, :, None], Y0), InvalidInputError, "must be 2-D"),
    "X is a list": (lambda: nnbin.train(X0.tolist(), Y0), InvalidInputError, "numpy.asarray"),
    "X has no rows": (
        lambda: nnbin.train(X0[:0], Y0[:0]),
        InvalidInputError,
        "at least one sample",
    ),
    "y has the wrong number of rows": (
        lambda: nnbin.train(X0, Y0[:-1]),
        InvalidInputError,
        "40 rows but y has 39",
    ),
    "y has two columns": (
        lambda: nnbin.train(X0, np.hstack([Y0, Y0])),
        InvalidInputError,
        "shape (N,) or (N, 1)",
    ),
    "y holds labels other than 0/1": (
        lambda: nnbin.train(X0, Y0 * 2),
        InvalidInputError,
        "only the labels 0 and 1",
    ),
    "y has one class only": (
        lambda: nnbin.train(X0, np.zeros_like(Y0)),
        InvalidInputError,
        "both classes",
    ),
    "X contains NaN": (
        lambda: nnbin.train(np.where(Y0 > 0, np.nan, X0), Y0),
        InvalidInputError,
        "NaN or infinite",
    ),
    "X contains infinity": (
        lambda: nnbin.train(np.where(Y0 > 0, np.inf, X0), Y0),
        InvalidInputError,
        "NaN or infinite",
    ),
    "X is complex": (
        lambda: nnbin.train(X0.astype(complex), Y0),
        InvalidInputError,
        "real numbers",
    ),
    "hidden is 0": (
        lambda: nnbin.train(X0, Y0, hidden=0),
        InvalidInputError,
        "hidden must be >= 1",
    ),
    "hidden is not whole": (
        lambda: nnbin.train(X0, Y0, hidden=2.5),
        InvalidInputError,
        "whole number",
    ),
    "lr is 0": (lambda: nnbin.train(X0, Y0, lr=0), InvalidInputError, "finite number > 0"),
    "lr is NaN": (
        lambda: nnbin.train(X0, Y0, lr=float("nan")),
        InvalidInputError,
        "finite number > 0",
    ),
    "steps is negative": (
        lambda: nnbin.train(X0, Y0, steps=-1),
        InvalidInputError,
        "steps must be >= 0",
    ),
    "dtype unsupported": (
        lambda: nnbin.train(X0, Y0, dtype="float16"),
        ValueError,
        "dtype must be one of float32, float64",
    ),
    "unknown backend": (
        lambda: nnbin.train(X0, Y0, backend="nope"),
        nnbin.UnknownBackendError,
        "choose one of",
    ),
    "data-parallel on numpy": (
        lambda: nnbin.train(X0, Y0, data_parallel=2),
        nnbin.BackendUnavailableError,
        "no data-parallel",
    ),
    "diverging learning rate": (
        lambda: nnbin.train(X0, Y0, steps=3, log_every=1, lr=1e308),
        nnbin.TrainingDivergedError,
        "not finite at step 1",
    ),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", list(API_CASES))
def test_api_bad_input(case, workdir):
    _, snapshot = workdir
    before = snapshot()
    call, exc_type, needle = API_CASES[case]
    with pytest.raises(exc_type) as info:
        call()
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert snapshot() == before


def test_mixed_libraries_name_both():
    xp = pytest.importorskip("array_api_strict")
    with pytest.raises(
        nnbin.MixedArraysError,
        match=r"X is a numpy.ndarray but y is a "
        r"array_api_strict",
    ):
        nnbin.train(X0, xp.asarray(Y0))


def test_integer_data_is_converted_with_a_note():
    with pytest.warns(UserWarning, match="converting it to float64"):
        result = nnbin.train(np.round(X0).astype(np.int64), Y0.astype(np.int64), steps=2)
    assert result.dtype == "float64"


def test_divergence_keeps_the_last_finite_parameters():
    with pytest.raises(nnbin.TrainingDivergedError) as info, np.errstate(all="ignore"):
        nnbin.train(X0, Y0, steps=5, log_every=1, lr=1e308)
    err = info.value
    assert err.step == 1 and err.lr == 1e308 and err.last_finite_step == 0
    assert all(np.all(np.isfinite(p)) for p in err.params)
    np.testing.assert_array_equal(err.params.W1, nnbin.init_params(1, 32, 0).W1)


def test_divergence_on_jax_keeps_the_last_finite_parameters():
    jax = pytest.importorskip("jax")
    Xj, yj = jax.numpy.asarray(X0, "float32"), jax.numpy.asarray(Y0, "float32")
    with pytest.raises(nnbin.TrainingDivergedError) as info:
        nnbin.train(Xj, yj, steps=6, log_every=2, lr=1e38)
    err = info.value
    assert err.step == 2 and err.last_finite_step == 0
    assert all(bool(jax.numpy.all(jax.numpy.isfinite(p))) for p in err.params)


# --- model files ------------------------------------------------------------------------


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


# --- the command line -----------------------------------------------------------------

CLI_CASES = {
    "negative --steps": (["train", "--steps", "-1"], "must be >= 0"),
    "zero --lr": (["train", "--lr", "0"], "finite number > 0"),
    "NaN --lr": (["train", "--lr", "nan"], "finite number > 0"),
    "non-numeric --hidden": (["train", "--hidden", "many"], "whole number"),
    "unknown --dtype": (["train", "--dtype", "float16"], "dtype must be one of float32, float64"),
    "unknown --backend": (["train", "--backend", "nope"], "unknown backend 'nope'"),
    "unknown flag": (["train", "--fast"], "unrecognized arguments"),
    "--data missing": (["train", "--data", "missing.csv"], "does not exist"),
    "--data empty": (["train", "--data", "empty.csv"], "is empty"),
    "--data wrong delimiter": (["train", "--data", "semicolon.csv"], "found one column"),
    "--data non-numeric cell": (["train", "--data", "words.csv"], "is not a number"),
    "--data ragged row": (["train", "--data", "ragged.csv"], "the header has 2 columns"),
    "--data no header": (["train", "--data", "noheader.csv"], "must be a header"),
    "--label missing column": (
        ["train", "--data", "good.csv", "--label", "cls"],
        "no column 'cls'",
    ),
    "--data labels not 0/1": (["train", "--data", "labels3.csv"], "labels must be 0 or 1"),
    "--data with NaN": (["train", "--data", "nan.csv"], "is not a number"),
    ".npy of the wrong shape": (["train", "--data", "flat.npy"], "expected a 2-D array"),
    "--save into a missing folder": (
        [
            "train",
            "--steps",
            "2",
            "--n-per-class",
            "10",
            "--no-plot",
            "--save",
            "no/such/dir/m.safetensors",
        ],
        "the folder no/such/dir does not exist",
    ),
    "predict: feature count mismatch": (
        ["predict", "--model", "keep.safetensors", "--data", "two.csv"],
        "takes 1 feature(s) but two.csv has 2",
    ),
}


BAD_FILES = {
    "empty.csv": "",
    "semicolon.csv": "x;label\n1;0\n2;1\n",
    "words.csv": "x,label\n1,0\ntwo,1\n",
    "ragged.csv": "x,label\n1,0\n2,1,3\n",
    "noheader.csv": "1,0\n2,1\n",
    "labels3.csv": "x,label\n1,0\n2,3\n",
    "nan.csv": "x,label\n1,0\n,1\n",
    "two.csv": "a,b\n1,2\n3,4\n",
}


def _write_bad_files():
    for name, text in BAD_FILES.items():
        with open(name, "w") as f:
            f.write(text)
    np.save("flat.npy", np.arange(4.0))


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_is_one_line_and_exit_2(case, workdir, capsys):
    _, snapshot = workdir
    _write_bad_files()
    before = snapshot()
    argv, needle = CLI_CASES[case]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]
    assert snapshot() == before


def test_debug_shows_the_traceback(workdir):
    out = subprocess.run(
        [sys.executable, "-m", "nnbin", "--debug", "train", "--data", "missing.csv"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_a_truncated_model_is_not_mistaken_for_a_pickle(workdir):
    """A safetensors header length whose low byte is 0x80 (a pickle's first byte) is still
    reported as a truncated safetensors file."""
    import struct as st

    folder, _ = workdir
    path = folder / "odd.safetensors"
    path.write_bytes(st.pack("<Q", 0x0280) + b"{" + b" " * 20)
    with pytest.raises(nnbin.ModelFileError, match="truncated"):
        nnbin.load(path)


def test_every_exception_nnbin_exports_lives_in_errors_under_nnbinerror():
    import inspect

    from nnbin import errors

    exported = [getattr(nnbin, n) for n in nnbin.__all__]
    classes = [c for c in exported if inspect.isclass(c) and issubclass(c, BaseException)]
    assert {c.__name__ for c in classes} >= {
        "NnbinError",
        "DataFileError",
        "ModelFileError",
        "InvalidInputError",
        "UnknownBackendError",
        "BackendUnavailableError",
        "TrainingDivergedError",
        "MixedArraysError",
    }
    for cls in classes:
        assert cls.__module__ == errors.__name__ and issubclass(cls, errors.NnbinError), cls
    for cls in (nnbin.DataFileError, nnbin.ModelFileError, nnbin.InvalidInputError):
        assert issubclass(cls, ValueError)


# The public functions on parameters and data: a wrong shape is one error, never a
# broadcast into a wrong number (y of shape (N,) against (N, 1) logits used to give an
# (N, N) array: a loss of 225 for a model whose loss is 0.0116).
P0 = nnbin.init_params(1, 3, seed=0)
P2 = nnbin.init_params(2, 3, seed=0)
FUNCTIONS_WITH_Y = {
    "loss": lambda p, X, y: nnbin.loss(p, X, y),
    "loss_and_grads": lambda p, X, y: nnbin.loss_and_grads(p, X, y),
    "step": lambda p, X, y: nnbin.step(p, X, y, 0.5),
    "accuracy": lambda p, X, y: nnbin.accuracy(p, X, y),
}
FUNCTIONS_OF_X = {
    "forward": lambda p, X, y: nnbin.forward(p, X),
    "predict_proba": lambda p, X, y: nnbin.predict_proba(p, X),
}
ALL_FUNCTIONS = {**FUNCTIONS_WITH_Y, **FUNCTIONS_OF_X}
BAD_Y = {
    "y with two columns": (np.hstack([Y0, Y0]), r"y must have shape \(N,\) or \(N, 1\)"),
    "y of shape (N, 1, 1)": (Y0[:, :, None], r"y must have shape \(N,\) or \(N, 1\)"),
    "y with a row short": (Y0[:-1], "X has 40 rows but y has 39"),
    "y of shape (1, N)": (Y0.T, r"y must have shape|X has 40 rows but y has 1"),
    "y a list": (Y0.tolist(), "y must be an array"),
    "y masked": (np.ma.masked_array(Y0), "y is a masked array"),
    "y complex": (Y0.astype(complex), "nnbin needs real numbers"),
}
BAD_X = {
    "X 1-D": (X0[:, 0], r"X must be 2-D.*X.reshape\(-1, 1\)"),
    "X 3-D": (X0[:, :, None], "X must be 2-D"),
    "X with 2 features for 1-feature parameters": (
        np.hstack([X0, X0]),
        "X has 2 features but the parameters take 1",
    ),
    "X masked": (np.ma.masked_array(X0, mask=np.zeros_like(X0, bool)), "X is a masked array"),
    "X a tuple": (tuple(X0[:, 0]), "X must be an array"),
}
BAD_PARAMS = {
    "three arrays": (P0[:3], "params must be nnbin.Params"),
    "a dict": (P0._asdict(), "params must be nnbin.Params"),
    "W2 of another model": (P0._replace(W2=P2.W2[:2]), r"W2 must have shape \(3, 1\)"),
    "b1 too long": (P0._replace(b1=np.zeros(4)), r"b1 must have shape \(3,\)"),
    "W1 1-D": (P0._replace(W1=P0.W1[0]), r"W1 must have shape \(D, H\)"),
    "b2 of shape ()": (P0._replace(b2=np.float64(0.0) * np.ones(())), r"b2 must have shape"),
}


@pytest.mark.parametrize("fn", list(FUNCTIONS_WITH_Y))
@pytest.mark.parametrize("case", list(BAD_Y))
def test_public_functions_refuse_a_bad_y(fn, case):
    y, message = BAD_Y[case]
    with pytest.raises(nnbin.InvalidInputError, match=message):
        FUNCTIONS_WITH_Y[fn](P0, X0, y)


@pytest.mark.parametrize("fn", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("case", list(BAD_X))
def test_public_functions_refuse_a_bad_x(fn, case):
    X, message = BAD_X[case]
    with pytest.raises(nnbin.InvalidInputError, match=message):
        ALL_FUNCTIONS[fn](P0, X, Y0)


@pytest.mark.parametrize("fn", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_public_functions_refuse_parameters_that_do_not_fit(fn, case):
    params, message = BAD_PARAMS[case]
    with pytest.raises(nnbin.InvalidInputError, match=message):
        ALL_FUNCTIONS[fn](params, X0, Y0)


def test_y_of_shape_n_is_taken_as_a_column_everywhere():
    result = nnbin.train(X0, Y0, hidden=3, steps=50)
    p, y1 = result.params, Y0[:, 0]
    assert float(nnbin.loss(p, X0, y1)) == float(nnbin.loss(p, X0, Y0))
    assert nnbin.accuracy(p, X0, y1) == nnbin.accuracy(p, X0, Y0) == 1.0
    loss1, g1 = nnbin.loss_and_grads(p, X0, y1)
    loss2, g2 = nnbin.loss_and_grads(p, X0, Y0)
    assert float(loss1) == float(loss2)
    for a, b, q in zip(g1, g2, p):
        assert a.shape == q.shape and np.array_equal(a, b)
    for a, b in zip(nnbin.step(p, X0, y1, 0.5), nnbin.step(p, X0, Y0, 0.5)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), 0.0, -1.0, True, "1", None, np.ones(2)])
def test_step_refuses_a_bad_step_size_as_train_does(lr):
    with pytest.raises(nnbin.InvalidInputError, match="lr must be"):
        nnbin.step(P0, X0, Y0, lr)
    with pytest.raises(nnbin.InvalidInputError, match="lr must be"):
        nnbin.train(X0, Y0, lr=lr, steps=1)


# --- files nnbin writes: only regular files, never an input or another output, nothing
# changed by a command that fails ------------------------------------------------------


def _cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def _tree(folder):
    """Every entry under ``folder``: name -> (kind, bytes or link target, permission bits)."""
    import os
    import stat

    out = {}
    for p in sorted(folder.rglob("*")):
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out[str(p)] = ("link", os.readlink(p), None)
        elif stat.S_ISREG(st.st_mode):
            out[str(p)] = ("file", p.read_bytes(), stat.S_IMODE(st.st_mode))
        else:
            out[str(p)] = ("other", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return out


TRAIN = ["train", "--steps", "2", "--n-per-class", "10", "--hidden", "3"]


@pytest.mark.parametrize("device", [(1, 3), (1, 5)], ids=["null", "zero"])
@pytest.mark.parametrize("option", [["--save"], ["--plot"]])
def test_train_never_replaces_a_device(device, option, workdir, capsys):
    """As root, a write through os.replace would turn /dev/null into a regular file. The
    test makes its own device node (the same as /dev/null or /dev/zero), so that a
    regression replaces that one, not the machine's."""
    import os
    import stat

    folder, _ = workdir
    node = folder / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(*device))
    except PermissionError:
        pytest.skip("making a device node needs root (and without root none can be replaced)")
    before = os.stat(node)
    argv = [*TRAIN, *option, str(node)] + (["--no-plot"] if option == ["--save"] else [])
    code, err = _cli(argv, capsys)
    assert code == 2 and f"{node} is a device: nnbin writes only regular files" in err
    after = os.stat(node)
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino
    assert not list(folder.glob(".nnbin-*"))


def test_outputs_that_are_not_regular_files_are_refused(workdir, capsys):
    import os

    folder, _ = workdir
    os.mkfifo("fifo")
    os.mkdir("adir")
    os.symlink("/dev/null", "to-null")
    os.symlink("nowhere/at-all", "dangling")
    before = _tree(folder)
    cases = {
        ("predict", "--out", "fifo"): "fifo is a FIFO",
        ("predict", "--out", "adir"): "adir is a folder",
        ("predict", "--out", "to-null"): "to-null (-> /dev/null) is a device",
        ("predict", "--out", "dangling"): "dangling is a symbolic link to",
        ("plot", "--out", "fifo"): "fifo is a FIFO",
        ("plot", "--out", ""): "an output path is empty",
    }
    for (cmd, option, path), needle in cases.items():
        extra = ["--model", "keep.safetensors"] + (
            ["--data", "good.csv"] if cmd == "predict" else []
        )
        code, err = _cli([cmd, *extra, option, path], capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    for option in ("--save", "--plot"):
        code, err = _cli([*TRAIN, option, "fifo"], capsys)
        assert code == 2 and "fifo is a FIFO" in err
    code, err = _cli(
        [
            "bench",
            "--backends",
            "numpy",
            "--sizes",
            "100",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--baselines",
            "none",
            "--json",
            "adir",
        ],
        capsys,
    )
    assert code == 2 and "adir is a folder" in err
    assert _tree(folder) == before


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["train", "--data", "d.npz", "--save", "d.npz", "--no-plot"],
            "--save d.npz would overwrite the input --data d.npz",
        ),
        (
            ["train", "--data", "good.csv", "--plot", "./sub/../good.csv"],
            "would overwrite the input --data good.csv",
        ),
        (
            ["train", "--save", "m.safetensors", "--plot", "m.safetensors"],
            "--plot m.safetensors and --save m.safetensors are the same file",
        ),
        (["train", "--save", "m.safetensors", "--plot", "link-to-m"], "are the same file"),
        (
            ["predict", "--model", "keep.safetensors", "--data", "good.csv", "--out", "good.csv"],
            "--out good.csv would overwrite the input --data good.csv",
        ),
        (
            [
                "predict",
                "--model",
                "keep.safetensors",
                "--data",
                "good.csv",
                "--out",
                "keep.safetensors",
            ],
            "would overwrite the input --model keep.safetensors",
        ),
        (
            ["plot", "--model", "keep.safetensors", "--out", "keep.safetensors"],
            "would overwrite the input --model keep.safetensors",
        ),
        (
            ["plot", "--model", "keep.safetensors", "--data", "good.csv", "--out", "link-to-good"],
            "would overwrite the input --data good.csv",
        ),
    ],
)
def test_no_command_overwrites_its_input_or_another_output(argv, needle, workdir, capsys):
    import os

    folder, _ = workdir
    np.savez("d.npz", X=X0, y=Y0)
    (folder / "m.safetensors").write_bytes(b"old model")
    (folder / "sub").mkdir()
    os.symlink("m.safetensors", "link-to-m")
    os.symlink("good.csv", "link-to-good")
    before = _tree(folder)
    code, err = _cli(argv, capsys)
    assert code == 2 and needle in err, err
    assert _tree(folder) == before


def test_a_failing_command_changes_nothing(workdir, capsys):
    folder, _ = workdir
    before = _tree(folder)
    code, err = _cli([*TRAIN, "--save", "keep.safetensors", "--plot", "missing_dir/b.png"], capsys)
    assert code == 2 and "the folder missing_dir does not exist" in err
    assert _tree(folder) == before  # the model was not replaced before the plot failed


def test_saving_over_a_file_keeps_its_permission_bits_and_writes_through_links(workdir, capsys):
    import os
    import stat

    folder, _ = workdir
    os.chmod("keep.safetensors", 0o600)
    old = (folder / "keep.safetensors").read_bytes()
    code, _ = _cli([*TRAIN, "--seed", "5", "--no-plot", "--save", "keep.safetensors"], capsys)
    assert code == 0 and (folder / "keep.safetensors").read_bytes() != old
    assert stat.S_IMODE(os.stat("keep.safetensors").st_mode) == 0o600
    os.symlink("keep.safetensors", "link.safetensors")
    code, _ = _cli([*TRAIN, "--seed", "6", "--no-plot", "--save", "link.safetensors"], capsys)
    assert code == 0 and os.path.islink("link.safetensors")  # the link stays a link
    assert nnbin.load("keep.safetensors").hidden == 3
    assert stat.S_IMODE(os.stat("keep.safetensors").st_mode) == 0o600
    assert not list(folder.glob(".nnbin-*"))


def test_predict_out_dash_is_standard_output(workdir, capsys):
    folder, _ = workdir
    before = _tree(folder)
    code = main(["predict", "--model", "keep.safetensors", "--data", "good.csv", "--out", "-"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("probability,label\n") and out.count("\n") == 101
    assert _tree(folder) == before


def test_sigterm_during_a_save_leaves_the_old_file_and_no_temporary(tmp_path):
    """A save killed by SIGTERM part-way: the old file is intact, no .nnbin-*.tmp is left."""
    import signal

    target = tmp_path / "model.bin"
    target.write_bytes(b"the old model")
    code = (
        "import os, signal, sys\n"
        "from nnbin.files import atomic_write\n"
        "def write(fh):\n"
        "    fh.write(b'half of a new ')\n"
        "    fh.flush()\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    fh.write(b'model')\n"
        f"atomic_write({str(target)!r}, write)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "KeyboardInterrupt" in out.stderr
    assert target.read_bytes() == b"the old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]
    before = signal.getsignal(signal.SIGTERM)  # and in this process the handler comes back
    from nnbin.files import atomic_write

    atomic_write(target, lambda fh: fh.write(b"new"))
    assert signal.getsignal(signal.SIGTERM) is before and target.read_bytes() == b"new"


def test_write_errors_name_the_path_given_not_a_temporary(tmp_path):
    import os

    from nnbin.files import atomic_write

    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores the bits: fail the write itself instead

            def write(fh):
                raise OSError(28, "No space left on device")
        else:

            def write(fh):
                fh.write(b"x")

        with pytest.raises(OSError) as info:
            atomic_write(ro / "out.csv", write)
        assert f"cannot write {ro / 'out.csv'}" in str(info.value)
        assert ".nnbin-" not in str(info.value) and not list(ro.iterdir())
    finally:
        os.chmod(ro, 0o700)


# --- files nnbin reads: regular files only, sizes checked before anything large is read ---


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


@pytest.mark.parametrize(
    "case, edit, needle",
    [
        ("metadata a list", dict(header_changes={"__metadata__": ["a"]}), "metadata must map"),
        ("metadata with a number", dict(meta_changes={"hidden": 3}), "metadata must map"),
        (
            "format version 1e400",
            dict(meta_changes={"format_version": "1e400"}),
            "unreadable format version",
        ),
        ("hidden 0", dict(meta_changes={"hidden": "0"}), "impossible shapes"),
        ("hidden missing", dict(drop_meta=("hidden",)), "n_features/hidden missing"),
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


def test_inputs_that_are_not_regular_files_are_refused_at_once(workdir, capsys):
    """A FIFO would hang, /dev/zero never ends: refused before reading, with one line."""
    import os

    folder, _ = workdir
    os.mkfifo("fifo.csv")
    os.symlink("/dev/zero", "zero.safetensors")
    os.symlink("/dev/zero", "zero.npy")
    code = "import sys; from nnbin.cli import main; sys.exit(main(sys.argv[1:]))"
    cases = {
        ("train", "--data", "fifo.csv", "--no-plot"): "fifo.csv is a FIFO",
        ("train", "--data", "zero.npy", "--no-plot"): "zero.npy is a device",
        ("predict", "--model", "fifo.csv", "--data", "good.csv"): "fifo.csv is a FIFO",
        ("predict", "--model", "zero.safetensors", "--data", "good.csv"): "is a device",
        ("predict", "--model", "keep.safetensors", "--data", "fifo.csv"): "is a FIFO",
        ("plot", "--model", "zero.safetensors", "--out", "x.png"): "is a device",
    }
    for argv, needle in cases.items():
        out = subprocess.run(
            [sys.executable, "-c", code, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=folder,
            env={**os.environ, "NNBIN_BACKEND": ""},
        )
        assert out.returncode == 2 and needle in out.stderr, (argv, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    with pytest.raises(nnbin.ModelFileError, match="a folder"):
        nnbin.load(folder)


def test_declared_sizes_are_checked_before_allocating(tmp_path):
    import tracemalloc

    big = tmp_path / "big.npy"
    with open(big, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (10**11, 2)}
        )
        fh.write(b"\0" * 64)
    with pytest.raises(nnbin.DataFileError, match=r"declares shape \(100000000000, 2\)"):
        nnbin.load_data(str(big))
    zeros = tmp_path / "zeros.safetensors"  # 64 MiB of zeros: a header length of 0
    with open(zeros, "wb") as fh:
        fh.truncate(64 << 20)
    huge = tmp_path / "huge.safetensors"  # a header length of 2**40
    huge.write_bytes((1 << 40).to_bytes(8, "little") + b"{" + b" " * 1000)
    tracemalloc.start()
    try:
        for path in (zeros, huge):
            with pytest.raises(nnbin.ModelFileError):
                nnbin.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # neither file was read whole


def test_hyperparameters_take_numpy_integers_and_refuse_bools_alike(tmp_path):
    result = nnbin.train(
        X0,
        Y0,
        hidden=np.int64(3),
        steps=np.int32(5),
        seed=np.int64(3),
        log_every=np.uint8(2),
        lr=np.float32(0.5),
    )
    assert result.params.W1.shape == (1, 3) and result.settings["seed"] == 3
    assert type(result.settings["seed"]) is int
    nnbin.save(tmp_path / "m.safetensors", result)  # saveable: plain Python numbers
    assert nnbin.load(tmp_path / "m.safetensors").settings["seed"] == 3
    for name in ("hidden", "steps", "log_every", "seed"):
        for bad in (True, np.bool_(True), 2.0, "3", None, np.float64(2.0)):
            with pytest.raises(nnbin.InvalidInputError, match=f"{name} must be a whole"):
                nnbin.train(X0, Y0, **{name: bad})
    with pytest.raises(nnbin.InvalidInputError, match="seed must be >= 0"):
        nnbin.train(X0, Y0, seed=-1)
    for bad in (True, np.bool_(True), "0.5"):
        with pytest.raises(nnbin.InvalidInputError, match="lr must be"):
            nnbin.train(X0, Y0, lr=bad)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["bench", "--sizes", "inf"], "--sizes: expected comma-separated whole numbers, got 'inf'"),
        (["bench", "--sizes", "2.7"], "got '2.7'"),
        (["bench", "--sizes", "nan,100"], "got 'nan,100'"),
        (["bench", "--steps", str(2**32)], "must be <= 2,147,483,647"),
        (["train", "--steps", str(2**31)], "must be <= 2,147,483,647"),
        (["train", "--log-every", str(2**40)], "must be <= 2,147,483,647"),
        (["train", "--save", ""], "an output path is empty"),
        (["train", "--label", "y"], "--label names a column of --data"),
        (
            ["plot", "--model", "keep.safetensors", "--out", "p.png", "--label", "y"],
            "--label names a column of --data",
        ),
    ],
)
def test_more_bad_arguments_are_one_line_and_exit_2(argv, needle, workdir, capsys):
    _, snapshot = workdir
    before = snapshot()
    code, err = _cli(argv, capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert snapshot() == before


def test_steps_beyond_32_bit_counters_are_refused_by_the_api():
    with pytest.raises(nnbin.InvalidInputError, match=r"<= 2,147,483,647"):
        nnbin.train(X0, Y0, steps=2**32)


def test_a_dollar_in_a_file_name_does_not_break_the_figure_title(workdir, capsys):
    import shutil

    folder, _ = workdir
    shutil.copy("keep.safetensors", "a$b_c$$d.safetensors")
    code = main(["plot", "--model", "a$b_c$$d.safetensors", "--out", "fig_$1.png"])
    assert code == 0 and (folder / "fig_$1.png").stat().st_size > 1000


def test_backends_marks_the_selected_backend_whatever_its_case(monkeypatch, capsys):
    monkeypatch.setenv("NNBIN_BACKEND", "NumPy")
    assert main(["backends"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any(r.startswith("*numpy") for r in rows), rows


# --- data files: every ambiguity or corruption is one line naming the line or column ---


@pytest.mark.parametrize(
    "text, needle",
    [
        ("x,label\n1,0\n\n\n2,x\n", "line 5, column 'label': 'x' is not a number"),  # blank lines
        ("x,label\n1,0\n2\n", "line 3: 1 values, the header has 2 columns"),
        ("x,x,label\n1,2,0\n", "the column name(s) 'x' appear more than once"),
        ("x,label,label\n1,0,1\n", "'label' appear more than once"),
        ("x,y,target\n1,0,1\n3,1,0\n", "columns 'y', 'target' could each be the label"),
        ("x,Label,CLASS\n1,0,1\n3,1,0\n", "columns 'Label', 'CLASS' could each be the label"),
        ("x,label\n1_000,0\n2,1\n", "line 2, column 'x': '1_000' is not a number"),
        ("x,label\n" + "9" * 200_000 + ",0\n", "field larger than field limit"),
        ("x,label\n1,0\n2,1\n" + ",".join(["1"] * 1000) + "\n", "line 4: 1000 values"),
    ],
)
def test_csv_problems_name_the_line_or_column(text, needle, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(nnbin.DataFileError) as info:
        nnbin.load_data(str(path))
    assert needle in str(info.value) and len(str(info.value).splitlines()) == 1


def test_csv_with_a_bom_and_a_label_in_another_case(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufeffx,Label\n1,0\n2,1\n".encode())
    _, y, names = nnbin.load_data(str(path))  # the BOM is not part of the first name
    assert names == ["x"] and y.ravel().tolist() == [0.0, 1.0]
    with pytest.raises(nnbin.DataFileError, match="did you mean 'Label'"):
        nnbin.load_data(str(path), label="label")


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "not a readable .npz"),
        (lambda p: np.savez(p, X=np.float64(1.0), y=np.float64(0.0)), "0-d arrays"),
        (lambda p: np.savez(p, X=X0.astype(complex), y=Y0), "reads real numbers only"),
        (lambda p: np.savez(p, X=X0[:, :, None], y=Y0), "X must be 2-D"),
        (lambda p: np.savez(p, X=X0, y=Y0[:-1]), "one label per row of X"),
        (lambda p: np.savez(p, X=X0, y=np.hstack([Y0, Y0])), "one label per row of X"),
    ],
)
def test_npz_problems_are_one_data_file_error(make, needle, tmp_path):
    path = tmp_path / "d.npz"
    make(path)
    if not path.exists():  # np.savez adds .npz only when missing
        path = tmp_path / "d.npz"
    truncated = tmp_path / "t.npz"
    np.savez(truncated, X=X0, y=Y0)
    truncated.write_bytes(truncated.read_bytes()[:200])
    for p, n in ((path, needle), (truncated, "not a readable .npz")):
        with pytest.raises(nnbin.DataFileError, match=n):
            nnbin.load_data(str(p))


def test_complex_npy_is_refused_not_silently_made_real(tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, np.column_stack([X0, Y0]).astype(complex) + 1j)
    with pytest.raises(nnbin.DataFileError, match="reads real numbers only"):
        nnbin.load_data(str(path))


@pytest.mark.parametrize("where", ["numpy", "torch"])
def test_finite_data_beyond_float32_is_reported_as_such(where):
    X = X0.copy()
    X[3, 0] = 1e39
    if where == "torch":
        torch = pytest.importorskip("torch")
        X, y = torch.from_numpy(X), torch.from_numpy(Y0)
    else:
        y = Y0
    with pytest.raises(nnbin.InvalidInputError, match="beyond float32's range"):
        nnbin.train(X, y, dtype="float32", steps=2)


def test_a_successful_run_prints_no_runtime_warning(workdir, capsys):
    """exp(-a) overflows to inf for very negative a and gives sigmoid = 0 exactly: neither
    the API nor the command line warns about it."""
    import warnings

    X, y = X0 * 200, Y0  # hidden pre-activations in the thousands
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = nnbin.train(X, y, hidden=4, steps=30)
        nnbin.predict_proba(result.params, X)
        nnbin.loss(result.params, X, y)
        assert nnbin.accuracy(result.params, X, y) == 1.0
    np.savetxt("big.csv", np.column_stack([X, y]), delimiter=",", header="x,label", comments="")
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnbin",
            "train",
            "--data",
            "big.csv",
            "--steps",
            "30",
            "--hidden",
            "4",
            "--save",
            "big.safetensors",
            "--plot",
            "big.png",
        ],
        capture_output=True,
        text=True,
    )
    assert code.returncode == 0 and "Warning" not in code.stderr, code.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnbin",
            "predict",
            "--model",
            "big.safetensors",
            "--data",
            "big.csv",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr


@pytest.mark.parametrize("backend", ["numpy", "strict", "torch"])
def test_a_network_that_cannot_fit_is_refused_before_allocating(backend):
    pytest.importorskip({"strict": "array_api_strict"}.get(backend, backend))
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(nnbin.InvalidInputError, match=r"would need about [\d.]+ GiB"):
            nnbin.train(X0, Y0, hidden=10**10, steps=1, backend=backend)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_accuracy_works_through_blocks_not_a_whole_n_by_h_array():
    import tracemalloc

    X, y = nnbin.two_gaussians(n_per_class=100_000, seed=0)
    result = nnbin.train(X[:2000], y[:2000], hidden=32, steps=100)
    tracemalloc.start()
    try:
        assert nnbin.accuracy(result.params, X, y) == 1.0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.05 * X.shape[0] * 32 * 8  # under 5% of one (N, H) float64 array


def test_arrays_of_one_library_with_another_backend_named_are_refused():
    xp = pytest.importorskip("array_api_strict")
    X, y = xp.asarray(X0), xp.asarray(Y0)
    with pytest.raises(nnbin.MixedArraysError, match="backend='numpy' was asked for"):
        nnbin.train(X, y, steps=1, backend="numpy")
