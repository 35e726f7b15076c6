"""Training, sampling and MCMC chain throughput against the number of devices.

    python benchmarks/scaling.py [--devices 1 2 4] [--parts train mcmc] [--steps 200] [--batch 1024]
                                 [--chains 8] [--warmup 200] [--samples 200]
                                 [--chain-methods vectorized sequential]

Each device count runs in its own process with XLA_FLAGS=--xla_force_host_platform_device_count=4
(simulated CPU devices share this machine's cores, so the figures show the overhead of the
sharded program, not a speed-up; on a GPU host run it with real devices). Prints a markdown table
per part:

* ``train``: data-parallel ``fit`` (examples/s) and sharded ``sample`` (draws/s) of a MADE flow on
  moons;
* ``mcmc``: ``infer(..., devices=N, chain_method=M)`` on eight schools
  (examples/eight_schools.gen): ``--chains`` NUTS chains split across the devices, chain
  transitions (warm-up + sampling) per second of the compiled run (compilation excluded, best of
  three runs), and
  the largest difference of the draws of ``mu`` from the one-device draws of the same chain
  method (sequential: 0, bit for bit; vectorized: rounding, which this funnel amplifies).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TRAIN_WORKER = textwrap.dedent('''
    import json, sys, time, jax, numpy as np, gendsl
    from gendsl.data import builtin
    devices, steps, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    prog = gendsl.compile(gendsl.parse(
        "model m {\\n  data x: real[2]\\n  x ~ factorize(made(hidden=[128, 128], components=8))\\n}\\n"))
    x = builtin("moons", 20000, seed=0).arrays["x"]
    kw = dict(key=jax.random.key(0), batch_size=batch, progress=False, devices=devices if devices > 1 else None)
    prog.fit({"x": x}, steps=20, **kw)  # compile
    fit = prog.fit({"x": x}, steps=steps, **kw)
    n = 8192
    prog.sample(fit.params, jax.random.key(1), n, devices=kw["devices"])
    t0 = time.perf_counter()
    jax.block_until_ready(prog.sample(fit.params, jax.random.key(2), n, devices=kw["devices"]))
    t_sample = time.perf_counter() - t0
    print(json.dumps({"devices": devices, "platform": jax.devices()[0].platform,
                      "train_examples_per_s": steps * batch / fit.train_seconds,
                      "samples_per_s": n / t_sample, "final_loss": float(fit.losses[-20:].mean())}))
''')

MCMC_WORKER = textwrap.dedent('''
    import json, sys, jax, numpy as np, gendsl
    devices, chains, warmup, samples, root, method = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
    prog = gendsl.compile(gendsl.load(root + "/examples/eight_schools.gen"))
    data = json.load(open(root + "/examples/eight_schools.json"))
    kw = dict(key=jax.random.key(0), num_chains=chains, num_warmup=warmup, num_samples=samples, chain_method=method)
    post = prog.infer(data, devices=devices if devices > 1 else None, **kw)
    # the compiled program is cached: the calls below only run it; best of 3 (a shared machine is noisy)
    again = [prog.infer(data, devices=devices if devices > 1 else None, **kw) for _ in range(3)]
    print(json.dumps({"devices": devices, "platform": jax.devices()[0].platform, "chains": chains, "method": method,
                      "transitions_per_s": chains * (warmup + samples) / min(p.sampling_seconds for p in again),
                      "compile_seconds": post.compile_seconds,
                      "mu": np.asarray(post.samples["mu"]).tolist()}))
''')


def _run(worker: str, argv: list, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", worker, *map(str, argv)], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_table(args, env) -> None:
    rows = [_run(TRAIN_WORKER, [d, args.steps, args.batch], env) for d in args.devices]
    base = rows[0]
    print(f"| devices ({base['platform']}) | train examples/s | ratio | samples/s | ratio | final loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['devices']} | {r['train_examples_per_s']:.0f} | {r['train_examples_per_s'] / base['train_examples_per_s']:.2f} "
              f"| {r['samples_per_s']:.0f} | {r['samples_per_s'] / base['samples_per_s']:.2f} | {r['final_loss']:.4f} |")


def mcmc_table(args, env) -> None:
    import numpy as np

    first = True
    for method in args.chain_methods:
        rows = [_run(MCMC_WORKER, [d, args.chains, args.warmup, args.samples, ROOT, method], env) for d in args.devices]
        base = rows[0]
        if first:
            print(f"| chain method | devices ({base['platform']}) | chains | chain transitions/s | ratio | compile s "
                  f"| max abs diff of mu vs {base['devices']} device(s) |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            first = False
        for r in rows:
            diff = float(np.max(np.abs(np.asarray(r["mu"]) - np.asarray(base["mu"]))))
            print(f"| {method} | {r['devices']} | {r['chains']} | {r['transitions_per_s']:.0f} | "
                  f"{r['transitions_per_s'] / base['transitions_per_s']:.2f} | {r['compile_seconds']:.1f} | {diff:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--parts", nargs="+", choices=["train", "mcmc"], default=["train", "mcmc"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--chains", type=int, default=8, help="MCMC chains (a multiple of every device count)")
    ap.add_argument("--warmup", type=int, default=200, help="MCMC warm-up transitions per chain")
    ap.add_argument("--samples", type=int, default=200, help="MCMC kept draws per chain")
    ap.add_argument("--chain-methods", nargs="+", choices=["vectorized", "sequential"],
                    default=["vectorized", "sequential"])
    ap.add_argument("--real", action="store_true", help="use the real devices (GPU host) instead of simulated CPUs")
    args = ap.parse_args()
    env = dict(os.environ)
    if not args.real:
        env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={max(args.devices)}", JAX_PLATFORMS="cpu")
    if "train" in args.parts:
        train_table(args, env)
    if "mcmc" in args.parts:
        if "train" in args.parts:
            print()
        mcmc_table(args, env)


if __name__ == "__main__":
    main()
