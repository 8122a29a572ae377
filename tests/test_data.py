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
