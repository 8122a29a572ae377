"""Files nnbin writes and reads (nnbin/files.py, through the commands): only regular files,
never over an input or another output, nothing changed by a command that fails, sizes
checked before anything large is read."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nnbin
from nnbin.cli import main

X0, Y0 = nnbin.two_gaussians(n_per_class=20, seed=0)


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
def test_train_never_replaces_a_device(cli, device, option, workdir):
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
    code, err = cli(argv)
    assert code == 2 and f"{node} is a device: nnbin writes only regular files" in err
    after = os.stat(node)
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino
    assert not list(folder.glob(".nnbin-*"))


def test_outputs_that_are_not_regular_files_are_refused(cli, workdir, bench_argv):
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
        code, err = cli([cmd, *extra, option, path])
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    for option in ("--save", "--plot"):
        code, err = cli([*TRAIN, option, "fifo"])
        assert code == 2 and "fifo is a FIFO" in err
    code, err = cli([*bench_argv(), "--json", "adir"])
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
def test_no_command_overwrites_its_input_or_another_output(cli, argv, needle, workdir):
    import os

    folder, _ = workdir
    np.savez("d.npz", X=X0, y=Y0)
    (folder / "m.safetensors").write_bytes(b"old model")
    (folder / "sub").mkdir()
    os.symlink("m.safetensors", "link-to-m")
    os.symlink("good.csv", "link-to-good")
    before = _tree(folder)
    code, err = cli(argv)
    assert code == 2 and needle in err, err
    assert _tree(folder) == before


def test_a_failing_command_changes_nothing(cli, workdir):
    folder, _ = workdir
    before = _tree(folder)
    code, err = cli([*TRAIN, "--save", "keep.safetensors", "--plot", "missing_dir/b.png"])
    assert code == 2 and "the folder missing_dir does not exist" in err
    assert _tree(folder) == before  # the model was not replaced before the plot failed


def test_saving_over_a_file_keeps_its_permission_bits_and_writes_through_links(
    cli, workdir, capsys
):
    import os
    import stat

    folder, _ = workdir
    os.chmod("keep.safetensors", 0o600)
    old = (folder / "keep.safetensors").read_bytes()
    code, _ = cli([*TRAIN, "--seed", "5", "--no-plot", "--save", "keep.safetensors"])
    assert code == 0 and (folder / "keep.safetensors").read_bytes() != old
    assert stat.S_IMODE(os.stat("keep.safetensors").st_mode) == 0o600
    os.symlink("keep.safetensors", "link.safetensors")
    code, _ = cli([*TRAIN, "--seed", "6", "--no-plot", "--save", "link.safetensors"])
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
