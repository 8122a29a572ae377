"""The benchmark's structure on tiny sizes (its timings are never asserted)."""

from __future__ import annotations

import json

import pytest

from nnbin import bench
from nnbin.cli import main


def test_report_structure_and_ratios(tmp_path, capsys, clean_backend_env):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    assert main(["bench", "--backends", "numpy", "--sizes", "200,400", "--steps", "3",
                 "--repeats", "2", "--dtypes", "float64", "--baselines", "seed-numpy",
                 "--json", str(out_json), "--plot", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert "nnbin:numpy" in text and "baseline:seed-numpy" in text and "× seed loop" in text
    report = json.loads(out_json.read_text())
    assert {"date", "machine", "repeats", "cells"} <= set(report)
    assert report["machine"]["cores"] >= 1 and "numpy" in report["machine"]
    cells = report["cells"]
    assert [(c["name"], c["n"]) for c in cells] == [
        ("baseline:seed-numpy", 200), ("nnbin:numpy", 200),
        ("baseline:seed-numpy", 400), ("nnbin:numpy", 400)]
    for c in cells:
        assert len(c["seconds"]) == 2 and all(s > 0 for s in c["seconds"])
        assert c["throughput"] == pytest.approx(c["n"] * 3 / c["median_seconds"])
    seed, ours = cells[0], cells[1]
    assert seed["vs_seed_numpy"] == pytest.approx(1.0)
    assert ours["vs_seed_numpy"] == pytest.approx(ours["throughput"] / seed["throughput"])
    assert ours["fastest_baseline"] == "baseline:seed-numpy"
    assert ours["peak_nh"] is not None and ours["peak_nh"] > 0
    assert out_png.stat().st_size > 10_000


def test_markdown_table(capsys, clean_backend_env):
    assert main(["bench", "--backends", "numpy", "--sizes", "100", "--steps", "2",
                 "--repeats", "1", "--dtypes", "float32", "--baselines", "none",
                 "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| variant |") and lines[1].startswith("|---|")
    assert any(line.startswith("| nnbin:numpy |") for line in lines)


def test_bad_bench_arguments_exit_2(capsys):
    assert main(["bench", "--backends", "nope", "--sizes", "10"]) == 2
    assert main(["bench", "--backends", "numpy", "--sizes", "ten"]) == 2
    assert main(["bench", "--backends", "numpy", "--baselines", "magic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("nnbin: error:") for line in err)


def test_default_steps_keep_work_near_2e7_sample_steps():
    assert bench.default_steps(20_000) == 1000
    assert bench.default_steps(2_000_000) == 10
    assert bench.default_steps(20_000_000) == 2
