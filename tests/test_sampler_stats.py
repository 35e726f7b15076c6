"""What a sampler measured while drawing reaches the run's records: parallel tempering's swap
rates (one per adjacent pair of temperatures) in metrics.json and in ``gendsl sample``'s record,
and in the line it prints."""

import json

import numpy as np

from gendsl.cli import main

MODEL = """model m {
  data x: real[2]
  x ~ energy(mlp(hidden=[16]), train=dsm(sigma=0.1, levels=1),
             sampler=tempering(chains=2, temperatures=4, steps=30, warmup=10))
}
"""


def test_swap_rates_are_in_the_fit_metrics_and_the_sampling_record(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.gen").write_text(MODEL)
    assert main(["fit", "m.gen", "--data", "builtin:moons", "--steps", "20", "--n", "400",
                 "--out", "run"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["sampler_stats"]["x"]["swap_rates"]) == 3
    assert len(metrics["sampler_stats"]["x"]["acceptance_rate"]) == 4
    capsys.readouterr()
    assert main(["sample", "run", "--n", "40", "--out", "draws.npz"]) == 0
    record = json.loads((tmp_path / "draws.npz.json").read_text())
    swaps = np.asarray(record["sampler_stats"]["x"]["swap_rates"])
    assert swaps.shape == (3,) and np.all((swaps >= 0) & (swaps <= 1)) and swaps.max() > 0
    assert "swap rates between adjacent temperatures: x " in capsys.readouterr().out
