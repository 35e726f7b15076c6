"""Small budgets for the tests that run the docs' code blocks and the examples end to end.

The library has no test knob: these tests wrap the entry points a docs page or an example calls
(``Program.fit``, ``Program.infer``, the CLI's ``fit`` and ``sample`` commands) so that every
budget is capped, and the real code paths run in seconds.
"""

from __future__ import annotations

import gendsl.cli as cli
from gendsl.program import Program

__all__ = ["CAPS", "small_budgets"]

#: the most steps, examples, draws, warm-up and kept draws, and chains any call may ask for
CAPS = {"steps": 10, "examples": 2000, "draws": 200, "warmup": 30, "samples": 30, "chains": 2}


def small_budgets(monkeypatch) -> None:
    """Cap every budget the docs and examples ask for (undone by ``monkeypatch`` after the test)."""
    fit, infer, fit_run, sample_run = Program.fit, Program.infer, cli.fit_run, cli.sample_run

    def small_fit(self, data, steps=2000, *args, **kwargs):
        return fit(self, data, min(int(steps), CAPS["steps"]), *args, **kwargs)

    def small_infer(self, data, key=None, num_chains=4, num_samples=1000, num_warmup=1000, *args, **kwargs):
        return infer(self, data, key, min(num_chains, CAPS["chains"]), min(num_samples, CAPS["samples"]),
                     min(num_warmup, CAPS["warmup"]), *args, **kwargs)

    def small_fit_run(*args, n_builtin=20000, **kwargs):
        return fit_run(*args, n_builtin=min(n_builtin, CAPS["examples"]), **kwargs)

    def small_sample_run(run_dir, n, *args, **kwargs):
        return sample_run(run_dir, min(n, CAPS["draws"]), *args, **kwargs)

    monkeypatch.setattr(Program, "fit", small_fit)
    monkeypatch.setattr(Program, "infer", small_infer)
    monkeypatch.setattr(cli, "fit_run", small_fit_run)
    monkeypatch.setattr(cli, "sample_run", small_sample_run)
