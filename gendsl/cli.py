"""The ``gendsl`` command line: check, describe, fit, sample, infer, distill.

Every user error prints ``FILE:LINE:COL: error: ...`` (with the line and a caret where there is
one) to stderr and exits 1; no Python traceback (set ``GENDSL_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

from gendsl import api
from gendsl.advisor import advise, render
from gendsl.bench import run_bench
from gendsl.distill import distill_run, distill_summary
from gendsl.errors import GenError, printable
from gendsl.inference_run import infer_run, posterior_summary, read_data
from gendsl.lang import read_text
from gendsl.numerics.devices import initialize_distributed
from gendsl.numerics.runtime_checks import user_errors
from gendsl.runs import PATIENCE, VALIDATION_SHARE, fit_run, sample_run, sample_summary, summary_line

__all__ = ["main", "build_parser"]


def _cmd_check(args) -> int:

    text = read_text(args.file)
    models = api.parse_all(text, str(args.file))
    for model in models:
        try:
            print(api.compile(model).describe())
        except GenError as err:
            print(f"model {model.name}: checked; not compiled: {printable(err.message)}")
    print(f"{args.file}: ok ({len(models)} model{'s' if len(models) != 1 else ''})")
    return 0


def _cmd_describe(args) -> int:

    print(api.compile(api.load(args.file, model=args.model)).describe())
    return 0


def _cmd_fit(args) -> int:

    metrics = fit_run(args.file, args.data, args.out, steps=args.steps, seed=args.seed, model_name=args.model,
                      batch_size=args.batch_size, learning_rate=args.lr, n_builtin=args.n,
                      progress=not args.quiet, resume=args.resume, checkpoint_every=args.checkpoint_every,
                      devices=args.devices, validation=args.validation or None, eval_every=args.eval_every,
                      patience=args.patience or None, force=args.force)
    if metrics is None:  # not process 0 of a multi-host run
        return 0
    print(f"{Path(args.file).stem}: {summary_line(metrics)}")
    print(f"wrote {args.out} (metrics.json, loss.png)")
    return 0


def _cmd_sample(args) -> int:

    given = {}
    for item in args.given or []:
        given.update(item)
    options = {k: v for k, v in (("sampler", args.sampler), ("steps", args.steps), ("solver", args.solver),
                                 ("guidance", args.guidance))
               if v is not None}
    record = sample_run(args.run, args.n, args.out, seed=args.seed, devices=args.devices, given=given, options=options)
    print(sample_summary(record))
    print(f"wrote {record['path']} (and {record['path']}.json: how the draws were made)")
    return 0


def _cmd_infer(args) -> int:

    init = {}
    for item in args.init or []:
        init.update(item)
    options = {k: v for k, v in (("target_accept", args.target_accept), ("max_tree_depth", args.max_tree_depth),
                                 ("mass", args.mass), ("init", init or None),
                                 ("log_marginal", args.log_marginal or None)) if v is not None}
    post = infer_run(args.file, args.data, args.out, chains=args.chains, samples=args.samples, warmup=args.warmup,
                     seed=args.seed, model_name=args.model, devices=args.devices, kernel=args.kernel, options=options)
    print(posterior_summary(post))
    print(f"wrote {args.out} (summary.json, sampler.json, draws.npz, posterior.nc, trace.png)")
    return 0


def _cmd_advise(args) -> int:

    model = api.load(args.file, model=args.model)
    dims = _dims(args.dim or [])
    print(render(advise(model, need=args.need, max_nfe=args.max_nfe, dims=dims), args.need, args.max_nfe,
                 model=model, dims=dims))
    return 0


def _dims(items: list[str]) -> dict[str, int]:
    """``["J=8", ...]`` -> ``{"J": 8}``; a malformed item is a user error."""

    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise GenError(f"--dim takes NAME=N with an integer N, got '{item}'") from None
    return out


def _cmd_bench(args) -> int:

    report = run_bench(args.out, quick=args.quick, seed=args.seed)
    print(f"wrote {report}")
    return 0


def _cmd_distill(args) -> int:

    metrics = distill_run(args.run, args.steps, args.out, seed=args.seed, train_steps=args.train_steps,
                          pairs=args.pairs)
    print(f"{Path(args.run).name} distilled: {distill_summary(metrics)}")
    print(f"wrote {args.out} (metrics.json, params/)")
    return 0


def _number(text: str, cast, ok, expected: str):
    """``text`` read by ``cast`` when ``ok`` holds for it, else an argparse error saying what was expected."""
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive(text: str) -> int:
    """A whole number of at least 1 (steps, draws, chains...)."""
    return _number(text, int, lambda v: v >= 1, "a whole number of at least 1")


#: most NUTS tree doublings ``--max-tree-depth`` takes: 2^30 gradient evaluations a transition
MAX_TREE_DEPTH = 30


def _tree_depth(text: str) -> int:
    """A NUTS tree depth: a whole number from 1 to :data:`MAX_TREE_DEPTH`."""
    return _number(text, int, lambda v: 1 <= v <= MAX_TREE_DEPTH, f"a whole number from 1 to {MAX_TREE_DEPTH}")


def _seed(text: str) -> int:
    """A PRNG seed: a whole number in [0, 2^32)."""
    return _number(text, int, lambda v: 0 <= v < 2**32, f"a whole number from 0 to {2**32 - 1}")


def _positive_number(text: str) -> float:
    """A finite number above 0 (a learning rate)."""
    return _number(text, float, lambda v: 0.0 < v < float("inf"), "a number above 0")


def _probability(text: str) -> float:
    """A number strictly between 0 and 1 (a target acceptance rate)."""
    return _number(text, float, lambda v: 0.0 < v < 1.0, "a number between 0 and 1")


def _out(text: str) -> str:
    """An output path: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return text


def _steps(text: str):
    """``--steps`` of ``sample``: a positive count or ``adaptive``."""
    return text if text == "adaptive" else _positive(text)


def _given(text: str) -> dict:
    """``--given NAME=VALUE`` (a number or a JSON list) or ``--given FILE`` (.npz / .json by name)."""
    name, sep, value = text.partition("=")
    if sep and name.isidentifier():
        try:
            return {name: json.loads(value)}
        except ValueError:
            raise argparse.ArgumentTypeError(f"the value of {name} must be a number or a JSON list, got {value!r}") from None
    try:
        return read_data(text)
    except GenError as err:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE or a .json / .npz file: {err.message}") from None


def _devices(text: str):
    """``--devices``: a positive number of devices, or ``all``."""
    if text == "all":
        return text
    try:
        return _positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number of devices or 'all', got {text!r}") from None


def _add_scaling(c) -> None:
    g = c.add_argument_group("devices and hosts")
    g.add_argument("--devices", type=_devices, default=None, help="number of devices, or 'all'")
    g.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (multi-host)")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gendsl", description="Compile and run generative models written in .gen files.")
    p.add_argument("--version", action="version", version=f"gendsl {version('gendsl')}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="parse and check a .gen file; print the plan")
    c.add_argument("file")
    c.set_defaults(func=_cmd_check)

    c = sub.add_parser("describe", help="print the plan of one model")
    c.add_argument("file")
    c.add_argument("--model", default=None)
    c.set_defaults(func=_cmd_describe)

    c = sub.add_parser("fit", help="train a model on data; write parameters, metrics and pictures")
    c.add_argument("file")
    c.add_argument("--data", required=True, help="builtin:NAME, a .npy, .npz or .json file")
    c.add_argument("--steps", type=_positive, required=True, help="optimiser steps (at most: validation may stop earlier)")
    c.add_argument("--out", type=_out, required=True, help="the run folder to write (made if missing)")
    c.add_argument("--force", action="store_true",
                   help="replace the run already in --out (its files stay until the new run has succeeded)")
    c.add_argument("--seed", type=_seed, default=0, help="seed of the data split, initialisation and batches (default 0)")
    c.add_argument("--model", default=None, help="the model to train, when the file holds several (default: the first)")
    c.add_argument("--batch-size", type=_positive, default=256, help="examples per optimiser step (default 256)")
    c.add_argument("--lr", type=_positive_number, default=1e-3, help="Adam's learning rate (default 1e-3)")
    c.add_argument("--n", type=_positive, default=20000, help="examples drawn from a builtin data set (default 20000)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    c.add_argument("--checkpoint-every", type=_positive, default=None, help="steps between checkpoints (default: steps/10)")
    c.add_argument("--validation", type=float, default=VALIDATION_SHARE,
                   help=f"share of the training data held out to pick the kept parameters and stop early "
                        f"(default {VALIDATION_SHARE}; 0: none)")
    c.add_argument("--eval-every", type=int, default=None,
                   help="steps between validation evaluations (default: about 100 a run, at least an epoch)")
    c.add_argument("--patience", type=int, default=PATIENCE,
                   help=f"evaluations without improvement before stopping (default {PATIENCE}; 0: run every step)")
    _add_scaling(c)
    c.set_defaults(func=_cmd_fit)

    c = sub.add_parser("sample", help="draw samples from a fitted run")
    c.add_argument("run")
    c.add_argument("--n", type=_positive, required=True, help="number of draws")
    c.add_argument("--out", type=_out, required=True, help="a .npy file (one variable) or .npz (every variable)")
    c.add_argument("--seed", type=_seed, default=0, help="seed of the draws (default 0)")
    c.add_argument("--given", type=_given, action="append", metavar="NAME=VALUE|FILE",
                   help="clamp a variable (e.g. label=3, or x=[0.5, 1.0]; repeatable), or those in a .json / .npz "
                        "file (one value for all draws or one per draw); the rest is drawn given them")
    g = c.add_argument_group("sampling-time choices (default: those of the model)")
    g.add_argument("--sampler", default=None,
                   help="another sampler, with its defaults: for evolve nodes ode, sde, edm_heun or dpm_solver; "
                        "for energies an MCMC kernel (nuts, mala...) or smc")
    g.add_argument("--steps", type=_steps, default=None, help="solver steps of evolve samplers (or 'adaptive')")
    g.add_argument("--solver", default=None, help="ODE solver of evolve samplers: euler, heun, midpoint or tsit5")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale of evolve nodes")
    _add_scaling(c)
    c.set_defaults(func=_cmd_sample)

    c = sub.add_parser("infer", help="posterior inference with MCMC")
    c.add_argument("file")
    c.add_argument("--data", required=True, help="a .json object (or .npz archive) keyed by variable name")
    c.add_argument("--out", type=_out, required=True, help="the folder for summary.json, draws.npz and trace.png")
    c.add_argument("--chains", type=_positive, default=4, help="independent chains (default 4)")
    c.add_argument("--samples", type=_positive, default=1000, help="kept draws per chain (default 1000)")
    c.add_argument("--warmup", type=_positive, default=1000, help="warm-up (adaptation) steps per chain (default 1000)")
    c.add_argument("--seed", type=_seed, default=0, help="seed of the chains (default 0)")
    c.add_argument("--model", default=None, help="the model, when the file holds several (default: the first)")
    g = c.add_argument_group("sampler")
    g.add_argument("--kernel", default="auto", help="nuts (auto), hmc, mala or langevin (default auto)")
    g.add_argument("--target-accept", type=_probability, default=None,
                   help="acceptance rate the step size is adapted to (default: the kernel's, 0.95 for NUTS)")
    g.add_argument("--max-tree-depth", type=_tree_depth, default=None,
                   help=f"NUTS: most tree doublings (default 10, at most {MAX_TREE_DEPTH})")
    g.add_argument("--mass", default=None, help="inverse mass matrix: auto (default), dense or diagonal")
    g.add_argument("--init", type=_given, action="append", metavar="NAME=VALUE|FILE",
                   help="a starting value for a latent, in its own space (repeatable; or a .json / .npz file)")
    c.add_argument("--log-marginal", action="store_true",
                   help="also estimate log p(data) and its standard error by tempered SMC (into sampler.json)")
    _add_scaling(c)
    c.set_defaults(func=_cmd_infer)

    c = sub.add_parser("advise", help="which mechanisms meet stated inference needs, per node")
    c.add_argument("file")
    c.add_argument("--need", default="sampling",
                   help="exact-likelihood, likelihood (exact or estimated), any-likelihood (unnormalized "
                        "too) or sampling (default)")
    c.add_argument("--max-nfe", type=int, default=None, help="network evaluations per sample at most")
    c.add_argument("--dim", action="append", metavar="NAME=N", help="value of a dimension (repeatable)")
    c.add_argument("--model", default=None)
    c.set_defaults(func=_cmd_advise)

    c = sub.add_parser("bench", help="the four mechanisms side by side on the same data and budget")
    c.add_argument("--quick", action="store_true", help="a few-minute run")
    c.add_argument("--out", type=_out, default="runs/bench", help="the folder for the report (default runs/bench)")
    c.add_argument("--seed", type=_seed, default=0, help="seed of data and training (default 0)")
    c.set_defaults(func=_cmd_bench)

    c = sub.add_parser("distill", help="distil a fitted evolve model into a K-step sampler")
    c.add_argument("run")
    c.add_argument("--steps", type=_positive, required=True, help="network evaluations of the student per sample")
    c.add_argument("--out", type=_out, required=True, help="the student's run folder (made if missing)")
    c.add_argument("--seed", type=_seed, default=0, help="seed of the distillation (default 0)")
    c.add_argument("--train-steps", type=_positive, default=4000, help="regression steps of the student (default 4000)")
    c.add_argument("--pairs", type=_positive, default=16384,
                   help="teacher ODE paths the student regresses onto (default 16384)")
    c.set_defaults(func=_cmd_distill)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gendsl`` console script; returns the exit code."""
    if hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(errors="backslashreplace")  # an error message must never fail to print
    args = build_parser().parse_args(argv)
    debug = bool(os.environ.get("GENDSL_DEBUG"))
    with warnings.catch_warnings():
        if not debug:  # a warning is one clean line for a user, not a Python source location
            warnings.showwarning = _show_warning
        return _run(args, debug)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {printable(str(message))}", file=sys.stderr if file is None else file)


def _run(args, debug: bool) -> int:
    try:
        if getattr(args, "coordinator", None) or getattr(args, "num_processes", None) or os.environ.get("JAX_COORDINATOR_ADDRESS"):

            initialize_distributed(args.coordinator, args.num_processes, args.process_id)
        with user_errors():  # a failure found while a compiled program ran is a GenError too
            return args.func(args)
    except GenError as err:
        if debug:
            raise
        print(err.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gendsl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the contract: never a traceback for a user
        if debug:
            raise
        print(f"gendsl: internal error: {type(err).__name__}: {err} (run with GENDSL_DEBUG=1 for details; "
              f"please report it)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
