"""The quality benchmark's machinery (its numbers are in BENCHMARKS.md, measured with
`nnbin quality`): both estimators run the epochs asked, on the held-out split."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn", reason="scikit-learn not installed")

from nnbin.cli import main, quality


def test_quality_rows_and_table():
    rows = quality.compare(["moons"], backends=("numpy",), epochs={"moons": 5})
    assert [(r.setting, r.model) for r in rows] == [
        (setting, model)
        for setting in ("adam", "sgd-invscaling", "sgd-adaptive", "lbfgs")
        for model in ("sklearn MLPClassifier", "nnbin:numpy float64")
    ]
    # 5 epochs (L-BFGS: 5 iterations at most, and it may converge before)
    assert all(r.shape == (1500, 2) for r in rows)
    assert all(r.epochs == 5 if r.setting != "lbfgs" else 1 <= r.epochs <= 5 for r in rows)
    assert all(0.5 < r.accuracy <= 1.0 and 0.5 < r.roc_auc <= 1.0 for r in rows)
    assert all(r.first_seconds > 0 and r.fit_seconds > 0 for r in rows)
    table = quality.markdown(rows)
    assert table.count("\n") == 9 and "x time" in table.splitlines()[-1]
    assert "| sgd-adaptive | nnbin:numpy float64 |" in table


def test_unknown_dataset_is_one_line(capsys):
    assert main(["quality", "--datasets", "mnist"]) == 2
    assert "unknown data set(s) mnist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--datasets", ""], "--datasets names no data set"),
        (["--datasets", " , "], "--datasets names no data set"),
        (["--datasets", "moons", "--backends", ""], "--backends names no backend"),
    ],
)
def test_an_empty_list_is_one_line_not_an_empty_table(argv, needle, capsys):
    assert main(["quality", *argv]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and captured.out == ""


def test_without_scikit_learn_it_says_so_first(monkeypatch, capsys):
    """Before any backend is looked at (jax missing too must not be what it says)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    assert main(["quality", "--backends", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "compares with scikit-learn: pip install 'nnbin[sklearn]'" in err, err
