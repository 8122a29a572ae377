"""The benchmark's structure on tiny sizes (its timings are never asserted)."""

from __future__ import annotations

import json

import pytest

from nnbin import bench
from nnbin.cli import main


def test_report_structure_and_ratios(tmp_path, capsys, clean_backend_env, bench_argv):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    argv = bench_argv("200,400", 3, "float64", "seed-numpy", "--repeats", "2")
    assert main([*argv, "--json", str(out_json), "--plot", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert "nnbin:numpy" in text and "baseline:seed-numpy" in text and "× seed loop" in text
    report = json.loads(out_json.read_text())
    assert {"date", "machine", "repeats", "cells"} <= set(report)
    assert report["machine"]["cores"] >= 1 and "numpy" in report["machine"]
    cells = report["cells"]
    assert [(c["name"], c["n"]) for c in cells] == [
        ("baseline:seed-numpy", 200),
        ("nnbin:numpy", 200),
        ("baseline:seed-numpy", 400),
        ("nnbin:numpy", 400),
    ]
    for c in cells:
        assert len(c["seconds"]) == 2 and all(s > 0 for s in c["seconds"])
        assert c["throughput"] == pytest.approx(c["n"] * 3 / c["median_seconds"])
    seed, ours = cells[0], cells[1]
    assert seed["vs_seed_numpy"] == pytest.approx(1.0)
    assert ours["vs_seed_numpy"] == pytest.approx(ours["throughput"] / seed["throughput"])
    assert ours["fastest_baseline"] == "baseline:seed-numpy"
    assert ours["peak_nh"] is not None and ours["peak_nh"] > 0
    assert out_png.stat().st_size > 10_000


def test_markdown_table(capsys, clean_backend_env, bench_argv):
    assert main(bench_argv("100", 2, "float32", "none", "--markdown")) == 0
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


def test_an_out_of_memory_cell_is_skipped_and_the_json_kept_after_every_cell(
    tmp_path, monkeypatch, capsys, clean_backend_env, bench_argv
):
    """A device OOM in one cell (any library's) loses that cell only: it is recorded as
    skipped with the memory it asked for, caches are released, the other cells run, and
    the JSON is rewritten after every cell."""
    real = bench._time_backend
    released, written = [], []

    def flaky(name, n, dtype, steps, repeats, fused=None):
        if n == 400:
            raise MemoryError("failed to allocate 1.2 GiB on the device")
        return real(name, n, dtype, steps, repeats, fused)

    monkeypatch.setattr(bench, "_time_backend", flaky)
    monkeypatch.setattr(bench, "_release_memory", lambda libs: released.append(1))
    real_write = bench.write_json

    def spy(report, path):
        written.append(len(report["cells"]))
        real_write(report, path)

    monkeypatch.setattr(bench, "write_json", spy)
    out = tmp_path / "b.json"
    assert main([*bench_argv("200,400,600", 2), "--json", str(out)]) == 0
    cells = json.loads(out.read_text())["cells"]
    assert [c["n"] for c in cells] == [200, 400, 600]
    assert cells[0]["seconds"] and cells[2]["seconds"] and not cells[1]["seconds"]
    why = cells[1]["skipped"]
    assert why.startswith("out of device memory (~") and "GiB asked for" in why
    assert "MemoryError: failed to allocate 1.2 GiB" in why
    assert written[:3] == [1, 2, 3] and len(released) == 3
    assert "skipped: out of device memory" in capsys.readouterr().err


def test_other_errors_in_a_cell_are_not_swallowed(monkeypatch, clean_backend_env):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug, not a lack of memory")

    monkeypatch.setattr(bench, "_time_backend", broken)
    with pytest.raises(ZeroDivisionError):
        bench.run_bench(["numpy"], [200], ["float64"], 2, 1, [])


def test_each_library_recognises_its_out_of_memory_error():
    from nnbin_backends.jax import JaxBackend, JaxTools

    jax_tools = JaxTools(object.__new__(JaxBackend))  # no JAX import needed to ask
    assert jax_tools.out_of_memory(
        RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2.50GiB.")
    )
    assert not jax_tools.out_of_memory(RuntimeError("INVALID_ARGUMENT: shapes"))
    torch = pytest.importorskip("torch")
    from nnbin_backends.torch import TorchBackend

    tb = TorchBackend().tools
    assert tb.out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert tb.out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not tb.out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
