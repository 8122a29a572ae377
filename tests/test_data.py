"""Data files (nnbin/data.py): every ambiguity or corruption is one `DataFileError` naming
the line or column."""

from __future__ import annotations

import numpy as np
import pytest

import nnbin

X0, Y0 = nnbin.two_gaussians(n_per_class=20, seed=0)


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


@pytest.mark.parametrize(
    "text, label, needle",
    [
        ("a,b\n1,0.5\n2,-0.89\n", None, "column 'b' (the last, taken as the label; name the label"),
        ("a,y\n1,0.5\n2,-0.89\n", None, "column 'y' (taken as the label by its name) holds"),
        ("a,b\n1,0\n2,1\n", "a", "the label column 'a' holds [2.0]"),
    ],
)
def test_labels_that_are_not_0_or_1_name_the_column_taken_as_the_label(
    text, label, needle, tmp_path
):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(nnbin.DataFileError) as info:
        nnbin.load_data(str(path), label)
    assert needle in str(info.value), str(info.value)


def test_npy_and_npz_labels_name_where_they_were_taken(tmp_path):
    np.save(tmp_path / "d.npy", np.array([[1.0, 0.5], [2.0, 1.0]]))
    with pytest.raises(nnbin.DataFileError, match="the array's last column holds"):
        nnbin.load_data(str(tmp_path / "d.npy"))
    np.savez(tmp_path / "d.npz", X=np.ones((2, 1)), y=np.array([0.0, 3.0]))
    with pytest.raises(nnbin.DataFileError, match="the array y holds"):
        nnbin.load_data(str(tmp_path / "d.npz"))


def test_seed_data_too_large_or_of_no_samples_is_one_line(cli):
    for bad, needle in ((0, "must be >= 1, got 0"), (2.5, "whole number >= 1, got 2.5")):
        with pytest.raises(nnbin.InvalidInputError, match=needle):
            nnbin.two_gaussians(bad)
    with pytest.raises(nnbin.InvalidInputError, match=r"the data would need about [\d.]+ GiB"):
        nnbin.two_gaussians(10**10)
    code, err = cli(["train", "--n-per-class", "10000000000", "--no-plot"])
    assert code == 2 and "draw fewer samples" in err and len(err.strip().splitlines()) == 1


def test_a_wide_csv_reads_in_time_linear_in_its_size(tmp_path):
    """300,000 columns: the header's duplicate check once counted each name in the whole
    header (quadratic: hours at 10^6 columns); now one pass. Not timed: a regression makes
    this test slow, the duplicate named below proves the check still runs."""
    n = 300_000
    names = [f"c{i}" for i in range(n)]
    path = tmp_path / "wide.csv"
    path.write_text(",".join([*names, "label"]) + "\n" + ",".join(["1"] * n + ["0"]) + "\n")
    X, y, features = nnbin.load_data(str(path))
    assert X.shape == (1, n) and y.shape == (1, 1) and features[-1] == f"c{n - 1}"
    names[-1] = "c7"
    path.write_text(",".join([*names, "label"]) + "\n" + ",".join(["1"] * n + ["0"]) + "\n")
    with pytest.raises(
        nnbin.DataFileError, match=r"the column name\(s\) 'c7' appear more than once"
    ):
        nnbin.load_data(str(path))
