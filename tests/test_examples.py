"""Every ``examples/*.gen`` file checks, trains for a few steps and samples, on the data its header names.

Each example declares, in its leading comment block::

    # data: builtin:moons                      (a built-in set, or a .npy / .npz / .json file)
    # run: fit                                 (default: train a few steps, then sample)
    # run: infer                               (posterior inference: the data is one data set)
    # run: sample                              (no data: sample from the initial parameters)

The glob picks up new files by themselves; a file without a ``# data:`` line (or ``# run:
sample``) fails with a message saying what to add. Budgets are tiny (tests/smoke.py): this checks
that the code paths run, not what the models learn.
"""

import re
from pathlib import Path

import jax
import numpy as np
import pytest
from smoke import small_budgets

import gendsl
from gendsl.cli import main
from gendsl.data import load_source
from gendsl.inference_run import read_data
from gendsl.runs import _shape_hint, model_data_variables

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.gen"))
HEADER = re.compile(r"^#\s*(data|run|model):\s*(\S+)\s*$")
RUNS = ("fit", "infer", "sample")
N_TRAIN, STEPS, DRAWS = 256, 3, 8


def header(path: Path) -> dict:
    """``data``, ``run`` (default ``fit``) and ``model`` from the leading comment lines of ``path``."""
    found = {"run": "fit"}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        m = HEADER.match(line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def _finite(draws: dict) -> None:
    for name, value in draws.items():
        value = np.asarray(value)
        assert value.size and np.all(np.isfinite(value)), f"{name}: non-finite draws"


def test_there_is_an_example_per_mechanism():
    text = "\n".join(p.read_text() for p in EXAMPLES)
    for mechanism in ("factorize(", "pushforward(", "evolve(", "energy("):
        assert mechanism in text, mechanism


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_checks_fits_and_samples(path, monkeypatch, capsys):
    small_budgets(monkeypatch)
    monkeypatch.chdir(ROOT)
    info = header(path)
    assert info["run"] in RUNS, f"{path.name}: '# run: {info['run']}' is not one of {RUNS}"
    assert "data" in info or info["run"] == "sample", (
        f"{path.name}: add a header line naming the data it runs on, e.g. '# data: builtin:moons' "
        f"(or '# data: examples/x.json' with '# run: infer', or '# run: sample' for a model without data)")
    assert main(["check", str(path)]) == 0
    capsys.readouterr()

    model = gendsl.load(path, model=info.get("model"))
    prog = gendsl.compile(model)
    key = jax.random.key(0)
    if info["run"] == "infer":
        post = prog.infer(read_data(ROOT / info["data"]), key=key, num_chains=2, num_samples=10, num_warmup=10)
        assert post.samples, f"{path.name}: no latent variable was sampled"
        _finite(post.samples)
        return
    if info["run"] == "sample":
        _finite(prog.sample(prog.init(key), key, DRAWS))
        return
    variables = model_data_variables(model)
    arrays = load_source(info["data"], variables, n_default=N_TRAIN, seed=0,
                         shape_hint=_shape_hint(model, variables)).arrays
    fit = prog.fit(arrays, steps=STEPS, key=key, batch_size=64, progress=False)
    assert len(fit.losses) and np.all(np.isfinite(fit.losses)), f"{path.name}: non-finite training loss"
    inputs = {v.name: arrays[v.name] if np.ndim(arrays[v.name]) == 0 else np.asarray(arrays[v.name])[:DRAWS]
              for v in model.by_role("input") if v.name in arrays}
    draws = prog.sample(fit.params, jax.random.key(1), DRAWS, inputs)
    _finite(draws)
    for v in model.by_role("observed"):
        assert np.shape(draws[v.name])[0] == DRAWS
