"""The command line: the seed job, its figure, and errors as one line with exit status 2."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import nnbin
from nnbin.cli import main

LOSS_LINE = re.compile(r"^step\s+(\d+)\s+loss\s+(\S+)$")


def _losses(text: str) -> list[tuple[int, float]]:
    return [(int(m[1]), float(m[2])) for m in map(LOSS_LINE.match, text.splitlines()) if m]


def _run(*args: str, env_backend: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("NNBIN_BACKEND", None)
    if env_backend is not None:
        env["NNBIN_BACKEND"] = env_backend
    return subprocess.run(
        [sys.executable, "-m", "nnbin", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_seed_job_prints_ten_falling_losses_and_writes_the_figure(tmp_path):
    figure = tmp_path / "boundary.png"
    out = _run("train", "--plot", str(figure))
    assert out.returncode == 0, out.stderr
    losses = _losses(out.stdout)
    assert [s for s, _ in losses] == list(range(0, 1000, 100))
    values = [v for _, v in losses]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert values[0] == pytest.approx(2.99, abs=0.01)  # true BCE of the seed start
    acc = float(re.search(r"training accuracy (\S+)", out.stdout)[1])
    assert acc >= 0.999
    boundary = float(re.search(r"at x = (-?\d+\.\d+)", out.stdout)[1])
    assert abs(boundary) < 0.5
    _check_png(figure)


def _check_png(path) -> None:
    import matplotlib.image

    assert path.stat().st_size > 20_000
    img = matplotlib.image.imread(path)
    assert img.shape[0] >= 400 and img.shape[1] >= 700
    rgb = img[..., :3]
    # densities (blue, orange fills), the black curve and the crimson boundary are drawn
    assert np.mean(np.all(rgb > 0.97, axis=-1)) < 0.9  # not a blank canvas
    blue = np.mean((rgb[..., 2] > 0.6) & (rgb[..., 0] < 0.5))
    orange = np.mean((rgb[..., 0] > 0.8) & (rgb[..., 1] > 0.4) & (rgb[..., 2] < 0.3))
    assert blue > 0.005 and orange > 0.005
    crimson = (rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.2) & (rgb[..., 2] > 0.15) & (rgb[..., 2] < 0.4)
    cols = np.nonzero(crimson.sum(axis=0) > img.shape[0] // 3)[0]
    assert cols.size > 0, "no vertical boundary line"
    assert abs(cols.mean() / img.shape[1] - 0.5) < 0.1  # near x = 0 of [-10, 10]


@pytest.mark.heavy
def test_strict_prints_the_same_losses_as_numpy():
    pytest.importorskip("array_api_strict")
    a = _run("train", "--no-plot", "--dtype", "float64")
    b = _run("train", "--no-plot", "--dtype", "float64", env_backend="strict")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    la, lb = _losses(a.stdout), _losses(b.stdout)
    assert len(la) == 10 and [s for s, _ in la] == [s for s, _ in lb]
    for (_, x), (_, y) in zip(la, lb):
        assert f"{x:.9e}" == f"{y:.9e}"  # 10 significant digits


def test_unknown_backend_is_one_line_and_status_2():
    out = _run("train", "--no-plot", env_backend="nope")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown backend 'nope'" in lines[0] and "numpy" in lines[0]
    assert "Traceback" not in out.stderr


def test_bad_flag_values_exit_2(capsys):
    for argv in (
        ["train", "--steps", "-1"],
        ["train", "--lr", "0"],
        ["train", "--lr", "nan"],
        ["train", "--hidden", "x"],
        ["train", "--dtype", "float16"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_quiet_short_run_in_process(tmp_path, capsys, clean_backend_env):
    assert (
        main(
            [
                "train",
                "--steps",
                "20",
                "--quiet",
                "--n-per-class",
                "200",
                "--plot",
                str(tmp_path / "b.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "step" not in out and "final loss" in out and (tmp_path / "b.png").exists()


def test_backends_table_lists_every_backend(capsys, clean_backend_env):
    assert main(["backends"]) == 0
    out, err = capsys.readouterr()
    for name in ("numpy", "strict", "jax"):
        assert re.search(rf"^[ *]{name}\s", out, re.M)
    assert re.search(r"^\*numpy\s+ok", out, re.M)
    # never a silent minute: each installed backend said on stderr as it is checked
    assert re.search(r"^checked numpy \(\d+/\d+\): ok, \d+\.\d s$", err, re.M), err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "train" in capsys.readouterr().out


def test_data_save_predict_plot_session(tmp_path, capsys, clean_backend_env):
    """train --data --save, then predict and plot from the saved model."""
    X, y = (
        np.asarray(a)
        for a in __import__("nnbin").two_gaussians(n_per_class=150, seed=3, n_features=2)
    )
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header="a,b,target", comments="")
    model, fig = tmp_path / "m.safetensors", tmp_path / "train.png"
    assert (
        main(
            [
                "train",
                "--data",
                str(csv),
                "--steps",
                "200",
                "--save",
                str(model),
                "--plot",
                str(fig),
                "--quiet",
            ]
        )
        == 0
    )
    assert model.exists() and fig.stat().st_size > 20_000
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), "--data", str(csv), "--out", str(out)]) == 0
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    assert out.read_text().splitlines()[0] == "probability,label"
    assert rows.shape == (300, 2) and np.all((rows[:, 0] >= 0) & (rows[:, 0] <= 1))
    np.testing.assert_array_equal(rows[:, 1], (rows[:, 0] >= 0.5).astype(float))
    assert np.mean(rows[:, 1] == y[:, 0]) >= 0.99
    heat = tmp_path / "heat.png"
    assert main(["plot", "--model", str(model), "--data", str(csv), "--out", str(heat)]) == 0
    import matplotlib.image

    img = matplotlib.image.imread(heat)[..., :3]
    red = np.mean((img[..., 0] > 0.5) & (img[..., 2] < 0.3))
    blue = np.mean((img[..., 2] > 0.4) & (img[..., 0] < 0.2))
    assert red > 0.02 and blue > 0.02  # both sides of the heat map are drawn
    capsys.readouterr()


def test_plot_of_a_one_feature_model_with_its_loss_curve(tmp_path, capsys, clean_backend_env):
    model = tmp_path / "m.safetensors"
    assert (
        main(
            [
                "train",
                "--n-per-class",
                "300",
                "--steps",
                "300",
                "--save",
                str(model),
                "--no-plot",
                "--quiet",
            ]
        )
        == 0
    )
    fig = tmp_path / "p.png"
    assert main(["plot", "--model", str(model), "--out", str(fig)]) == 0
    assert "decision boundary (p = 0.5) at x = " in capsys.readouterr().out
    import matplotlib.image

    img = matplotlib.image.imread(fig)
    assert img.shape[1] > 1.5 * img.shape[0]  # two panels: boundary and loss curve


def test_predict_on_another_backend_matches(tmp_path, capsys, clean_backend_env):
    pytest.importorskip("jax")
    model = tmp_path / "m.safetensors"
    assert (
        main(
            [
                "train",
                "--n-per-class",
                "100",
                "--steps",
                "50",
                "--save",
                str(model),
                "--no-plot",
                "--quiet",
            ]
        )
        == 0
    )
    data = tmp_path / "x.npy"
    np.save(data, np.linspace(-3, 3, 7)[:, None])
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--data", str(data)]) == 0
    a = capsys.readouterr().out
    assert main(["predict", "--model", str(model), "--data", str(data), "--backend", "jax"]) == 0
    b = capsys.readouterr().out
    pa = np.loadtxt(a.splitlines()[1:], delimiter=",")
    pb = np.loadtxt(b.splitlines()[1:], delimiter=",")
    np.testing.assert_allclose(pa, pb, rtol=1e-12)


def test_jax_runs_from_the_command_line_keep_their_compiled_code(tmp_path, monkeypatch):
    """A second `nnbin train --backend jax` finds its compiled run in the cache folder;
    NNBIN_CACHE_DIR=off keeps nothing. (How much time that saves is for the benchmark.)"""
    pytest.importorskip("jax")

    def train(cache):
        env = {**os.environ, "NNBIN_CACHE_DIR": str(cache), "NNBIN_BACKEND": ""}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "nnbin",
                "train",
                "--backend",
                "jax",
                "--steps",
                "20",
                "--n-per-class",
                "50",
                "--no-plot",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr

    cache = tmp_path / "cache"
    train(cache)
    kept = sorted(p.name for p in (cache / "jax-compiled").iterdir())
    assert any(name.startswith("jit__advance") for name in kept)  # the compiled call
    train(cache)  # the same shapes: nothing new to compile, so nothing new is kept
    assert sorted(p.name for p in (cache / "jax-compiled").iterdir()) == kept
    train("off")
    assert not (tmp_path / "off").exists()


@pytest.mark.parametrize(
    "backend,sig",
    [
        ("numpy", "SIGINT"),
        ("strict", "SIGINT"),
        ("jax", "SIGINT"),
        ("torch", "SIGINT"),
        ("dask", "SIGINT"),
        ("numpy", "SIGTERM"),
    ],
)
def test_a_signal_stops_any_backend_within_about_a_chunk(tmp_path, backend, sig):
    """Every backend runs in the one loop of calls of ~0.25 s (nnbin/loop.py): a signal ends
    a run of minutes at once (exit 130 or 143, "interrupted"), not after the run; JAX runs a
    call as one compiled call."""
    import os
    import signal
    import time

    if backend != "numpy":
        pytest.importorskip({"strict": "array_api_strict"}.get(backend, backend))
    env = {**os.environ, "NNBIN_BACKEND": "", "NNBIN_CACHE_DIR": "off", "PYTHONUNBUFFERED": "1"}
    # a background job of a non-interactive shell ignores SIGINT, and so would its child:
    # the child puts Python's KeyboardInterrupt handler back before it runs nnbin
    child = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, "
        "signal.default_int_handler); sys.argv[0] = 'nnbin'; "
        "runpy.run_module('nnbin', run_name='__main__')"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            child,
            "train",
            "--backend",
            backend,
            "--steps",
            "2000000",
            "--log-every",
            "100000",
            "--no-plot",
            "--save",
            "m.safetensors",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline()  # the first logged loss: training has started
        assert line.startswith("step      0"), line
        proc.send_signal(getattr(signal, sig))
        t0 = time.perf_counter()
        _, err = proc.communicate(timeout=60)
        stopped_after = time.perf_counter() - t0
    finally:
        proc.kill()
    assert proc.returncode == (130 if sig == "SIGINT" else 143), err
    assert "interrupted" in err, err
    assert stopped_after < 10  # the whole run would take hours on any machine
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left behind


def test_deep_network_options_train_save_and_predict(tmp_path, capsys):
    model = tmp_path / "deep.safetensors"
    code = main(
        [
            "train",
            "--hidden",
            "8,4",
            "--activation",
            "tanh",
            "--optimizer",
            "momentum",
            "--nesterov",
            "--lr",
            "0.05",
            "--batch-size",
            "100",
            "--steps",
            "40",
            "--log-every",
            "10",
            "--alpha",
            "1e-3",
            "--n-per-class",
            "300",
            "--n-iter-no-change",
            "3",
            "--tol",
            "1e-3",
            "--no-plot",
            "--quiet",
            "--save",
            str(model),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "training accuracy 1.0000" in out and "mini-batches of 100" in out
    data = tmp_path / "x.csv"
    data.write_text("x\n-6\n6\n")
    assert main(["predict", "--model", str(model), "--data", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "probability,label" and [line[-1] for line in lines[1:]] == ["0", "1"]


def test_no_hidden_layer_trains_saves_plots_and_predicts(tmp_path, capsys):
    """--hidden "": logistic regression, through the same commands; the figure's title
    says "no hidden layer" (an activation it does not have is not named)."""
    model, figure = tmp_path / "lr.safetensors", tmp_path / "lr.png"
    args = ["train", "--hidden", "", "--steps", "50", "--lr", "0.5", "--quiet", "--no-plot"]
    assert main([*args, "--n-per-class", "200", "--save", str(model)]) == 0
    out = capsys.readouterr().out
    assert "training accuracy 1.0000" in out, out
    data = tmp_path / "x.csv"
    data.write_text("x\n-6\n6\n")
    assert main(["predict", "--model", str(model), "--data", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[-1] for line in lines[1:]] == ["0", "1"]
    pytest.importorskip("matplotlib")
    from nnbin.cli.common import architecture_text

    assert main(["plot", "--model", str(model), "--out", str(figure)]) == 0
    assert figure.stat().st_size > 0
    assert architecture_text((), "relu") == "no hidden layer"
    assert architecture_text((64, 32), "relu") == "64,32 hidden (relu)"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "8,0"], "must be >= 1"),
        (["--hidden", "8,x"], "every hidden width must be a whole number"),
        (["--activation", "softmax"], "activation must be one of"),
        (["--alpha", "-1"], "alpha must be a finite number >= 0"),
        (["--validation-fraction", "2"], "validation_fraction must be a finite number in (0, 1)"),
    ],
)
def test_deep_network_options_are_checked(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--no-plot", *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


# --- bad input on the command line: one line, exit status 2, no file changed --------------

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
        "takes 1 feature but two.csv has 2",
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
def test_more_bad_arguments_are_one_line_and_exit_2(cli, argv, needle, workdir):
    _, snapshot = workdir
    before = snapshot()
    code, err = cli(argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert snapshot() == before


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


def test_finite_features_too_large_for_the_arithmetic_are_one_line_not_nan(workdir, cli):
    """A finite feature of 1e308 through a ReLU layer: inf on both hidden units, and
    inf - inf into the output. nnbin predict says so in one line (exit 2, nothing written),
    never a NaN probability; a sigmoid layer saturates exactly instead."""
    folder, snapshot = workdir
    relu = (np.array([[4.0, 4.0]]), np.zeros(2), np.array([[1.0], [-1.0]]), np.zeros(1))
    nnbin.save("relu.safetensors", nnbin.Model(relu, "float64", activation="relu"))
    np.savetxt("huge.csv", [[1.0], [1e308]], delimiter=",", header="a", comments="")
    before = snapshot()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning besides the one line
        code, err = cli(
            ["predict", "--model", "relu.safetensors", "--data", "huge.csv", "--out", "p.csv"]
        )
    assert code == 2 and "data row 2 are too large" in err and len(err.strip().splitlines()) == 1
    assert snapshot() == before
    sigmoid = nnbin.Params(*relu, activation="sigmoid")
    nnbin.save("sigmoid.safetensors", nnbin.Model(sigmoid, "float64"))
    code, err = cli(
        ["predict", "--model", "sigmoid.safetensors", "--data", "huge.csv", "--out", "q.csv"]
    )
    assert code == 0, err
    probabilities = np.loadtxt(folder / "q.csv", delimiter=",", skiprows=1)[:, 0]
    np.testing.assert_array_equal(probabilities, [0.5, 0.5])  # both units saturate alike


def test_backends_says_when_the_environment_names_no_backend(monkeypatch, capsys):
    monkeypatch.setenv("NNBIN_BACKEND", "nosuch")
    assert main(["backends"]) == 2
    captured = capsys.readouterr()
    assert "numpy" in captured.out and "*" not in captured.out.splitlines()[1]  # the table
    # the progress lines ("checked numpy (4/6): ok, 0.0 s"), then the error: one line, last
    *progress, err = captured.err.strip().splitlines()
    assert all(line.startswith("checked ") for line in progress), progress
    assert "NNBIN_BACKEND='nosuch' names no backend; choose one of:" in err


def test_early_stopping_says_why_it_stopped_and_which_parameters_it_kept(capsys):
    argv = ["train", "--n-per-class", "200", "--hidden", "4", "--no-plot", "--quiet"]
    argv += ["--steps", "300", "--early-stopping", "--batch-size", "50", "--optimizer", "adam"]
    assert main([*argv, "--lr", "0.05", "--n-iter-no-change", "3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"stopped after \d+ epochs: the held-out accuracy did not improve", out)
    assert "for more than 3 epochs in a row" in out
    kept = re.search(r"kept the parameters of epoch (\d+), the best held-out accuracy", out)
    assert kept and int(kept[1]) >= 1, out


def test_features_too_large_to_plot_are_said_in_one_line(workdir, cli, capsys):
    """Finite features near 1e300 train; the figure cannot be drawn (a density over them
    overflows): the default figure is left out with one line, an asked-for one is refused
    before training, and nnbin plot refuses before writing."""
    pytest.importorskip("matplotlib")
    folder, snapshot = workdir
    np.savetxt(
        "big.csv", [[1e300, 0], [2e300, 1], [-1e300, 0], [3e300, 1]], delimiter=",",
        header="a,label", comments="",
    )  # fmt: skip
    code, err = cli(["train", "--data", "big.csv", "--steps", "3", "--quiet", "--save", "b.st"])
    assert code == 0 and err.strip() == (
        "no figure: the features reach 3e+300, too large to plot (beyond 1e+150: a density "
        "over them overflows); rescale the features to draw them"
    )
    assert (folder / "b.st").exists() and not (folder / "boundary.png").exists()
    before = snapshot()
    for argv in (
        ["train", "--data", "big.csv", "--steps", "3", "--quiet", "--plot", "b.png"],
        ["plot", "--model", "b.st", "--data", "big.csv", "--out", "c.png"],
    ):
        code, err = cli(argv)
        assert code == 2 and "too large to plot" in err and len(err.strip().splitlines()) == 1
        assert snapshot() == before


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_run_that_diverges_while_saving_over_a_model_says_one_line(dtype, workdir, cli):
    """--lr 1e308 over an existing model: one line (no library warning), exit 2, the old
    model byte for byte."""
    _, snapshot = workdir
    before = snapshot()
    argv = ["train", "--lr", "1e308", "--steps", "50", "--n-per-class", "50", "--no-plot"]
    argv += ["--hidden", "3,3", "--activation", "relu", "--log-every", "1", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would be a second line
        code, err = cli([*argv, "--dtype", dtype, "--save", "keep.safetensors"])
    assert code == 2 and "training diverged" in err and len(err.strip().splitlines()) == 1
    assert snapshot() == before


def test_a_default_from_the_environment_is_not_a_flag_the_user_gave(monkeypatch, capsys, tmp_path):
    """NNBIN_CUDA_GRAPHS=0 sets fused_graphs' default off: ``nnbin train --no-fused`` then
    runs (the command line does not send fused_graphs as if its flag had been given, which
    would refuse it as unable to take effect without the fused step)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNBIN_CUDA_GRAPHS", "0")
    monkeypatch.setenv("NNBIN_CUDA_FAST_MATH", "1")
    assert main(["train", "--steps", "2", "--log-every", "1", "--no-fused", "--no-plot"]) == 0
    err = capsys.readouterr().err
    assert "cannot take effect" not in err
    # given explicitly where it cannot act, it is refused as any option
    monkeypatch.delenv("NNBIN_CUDA_FAST_MATH")
    assert main(["train", "--steps", "2", "--no-fused", "--fast-math", "--no-plot"]) == 2
    assert "fast_math=True (--fast-math) cannot take effect" in capsys.readouterr().err
