"""``gendsl bench`` end to end on a tiny budget: a row per mechanism with finite numbers, and the
pictures (the real quick run takes minutes; see docs/benchmarks.md)."""

import json
import math

import pytest

from gendsl import bench
from gendsl.cli import main

TINY = bench.Budget(n_train=256, n_test=64, steps=3, hidden=8, batch_size=64, distill_steps=3, distill_pairs=64)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(bench, "QUICK", TINY)
    monkeypatch.setattr(bench, "DATASETS", ("moons",))


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def test_quick_bench_writes_a_row_per_mechanism(tiny, tmp_path):
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "benchmark.md").read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["budget"]["steps"] == TINY.steps
    rows = results["results"]["moons"]
    labels = [*bench.MECHANISMS, *bench.DISTILLED]
    assert [r["mechanism"] for r in rows] == labels
    for r in rows:
        assert r["kind"] in ("exact", "estimate", "unnormalized", "unavailable")
        assert _finite(r["ed_over_floor"]) and r["ed_over_floor"] > 0, r
        assert _finite(r["sample_s_per_1000"]) and _finite(r["train_seconds"]), r
        assert isinstance(r["nfe"], int) and r["nfe"] >= 1, r
        assert _finite(r["heldout_nll"]) == (r["kind"] in ("exact", "estimate")), r
    # the summary table and the per-data-set table name every mechanism once each
    for label in labels:
        assert report.count(f"| {label} |") == 2, label
    assert "| energy (mlp, mala) | unnormalized |" in report
    png = tmp_path / "samples.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![samples](samples.png)" in report


def test_summary_table_lines_up_data_sets():
    row = {"mechanism": "m", "heldout_nll": 1.0, "kind": "exact", "ed_over_floor": 1.5, "nfe": 4}
    table = bench.summary_table({"a": [row], "b": [{**row, "heldout_nll": None, "ed_over_floor": 2.0}]})
    lines = table.splitlines()
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|")
    assert lines[2] == "| m | exact | 4 | 1.00 | 1.50 | n/a | 2.00 |"
