"""factorize over tokens: the key/value cache's sampling speed-up, and held-out NLL against the entropy.

    python benchmarks/factorize.py [--batches 1 32 256] [--steps 100 250 500] [--out runs/factorize.json]

The model is ``examples/markov_text.gen`` (``s: token[32] of 8``, ``factorize(transformer(layers=2,
width=64, heads=4))``), built here from the same text.

1. NLL against the entropy. The model is fitted with ``Program.fit`` (Adam(1e-3), batch 256, the
   same initialisation key for every row) on ``builtin("markov", n_train, seed=0)`` for each step
   count; the held-out NLL (nats per sequence, exact) is measured on fresh sequences
   (``seed=1``) and compared with the chain's exact entropy per sequence, ``Dataset.true_nll``.
   The wall time is that of the ``fit`` call, compilation included.
2. Sampling throughput. With the parameters of the last fit, ``Factorize.sample`` draws
   ``n`` sequences with the transformer's key/value cache (``cache=True``: one position's query,
   key and value per step) and without it (``cache=False``: the whole prefix recomputed at every
   step), with the same keys. Both samplers are compiled first, then called in turn
   ``--repeats`` times each; the best wall time gives sequences per second (on a shared machine
   the best run is the least disturbed one), and the speed-up is given both in wall time and in
   process CPU time (all threads; less sensitive to other processes' load). The two samplers
   must give identical draws.

Prints two markdown tables and the command; with ``--out``, also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gendsl
from gendsl.data import builtin

LENGTH, VOCAB = 32, 8
MODEL = f"""model markov_text {{
  data s: token[{LENGTH}] of {VOCAB}
  s ~ factorize(transformer(layers=2, width=64, heads=4))
}}
"""


def fit_rows(prog, steps_list, n_train, n_test, batch_size):
    """One fit per step count (same init key): held-out NLL, entropy, gap, wall time."""
    train = builtin("markov", n_train, seed=0, shape_hint=(LENGTH, VOCAB), variable="s")
    test = builtin("markov", n_test, seed=1, shape_hint=(LENGTH, VOCAB), variable="s")
    true_nll = float(test.true_nll)
    rows, params = [], None
    for steps in steps_list:
        t0 = time.perf_counter()
        fit = prog.fit(train.arrays, steps=steps, key=jax.random.key(0), batch_size=batch_size, progress=False)
        jax.block_until_ready(fit.params)
        seconds = time.perf_counter() - t0
        nll = -float(jnp.mean(prog.log_prob(fit.params, test.arrays)))
        rows.append({"steps": steps, "heldout_nll": nll, "true_nll": true_nll,
                     "gap_percent": 100.0 * (nll - true_nll) / true_nll, "train_seconds": seconds,
                     "final_loss": float(np.mean(np.asarray(fit.losses)[-50:]))})
        print(f"  fit {steps:>5} steps: held-out NLL {nll:.3f} (entropy {true_nll:.3f}), {seconds:.1f} s",
              file=sys.stderr, flush=True)
        params = fit.params
    return rows, params


def timed_pair(fns, repeats):
    """Compile each of ``fns``, then call them in turn ``repeats`` times (interleaved, so that both
    see the same machine load). Returns per function the best wall time, the best process CPU time
    (all threads) and the last output."""
    outs = [jax.block_until_ready(fn()) for fn in fns]
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            w0, c0 = time.perf_counter(), time.process_time()
            outs[i] = jax.block_until_ready(fn())
            wall[i].append(time.perf_counter() - w0)
            cpu[i].append(time.process_time() - c0)
    return [(min(w), min(c), out) for w, c, out in zip(wall, cpu, outs)]


def throughput_rows(mech, params, batches, repeats):
    """Cached vs uncached sampling: sequences/second, ratios, and whether the draws are identical."""
    rows = []
    for n in batches:
        key = jax.random.key(1000 + n)
        (w_cache, c_cache, x_cache), (w_plain, c_plain, x_plain) = timed_pair(
            [lambda: mech.sample(params, key, n, cache=True), lambda: mech.sample(params, key, n, cache=False)],
            repeats)
        x_cache, x_plain = np.asarray(x_cache), np.asarray(x_plain)
        same_rows = float(np.mean(np.all(x_cache == x_plain, axis=1)))
        rows.append({"n": n, "cache_seq_per_s": n / w_cache, "no_cache_seq_per_s": n / w_plain,
                     "speedup": w_plain / w_cache, "speedup_cpu_time": c_plain / c_cache,
                     "cache_cpu_seconds": c_cache, "no_cache_cpu_seconds": c_plain,
                     "identical": bool(np.array_equal(x_cache, x_plain)), "identical_fraction": same_rows})
        print(f"  sample n={n}: cache {w_cache * 1e3:.1f} ms ({c_cache * 1e3:.1f} ms CPU), "
              f"no cache {w_plain * 1e3:.1f} ms ({c_plain * 1e3:.1f} ms CPU)", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32, 256], help="draws per sampling call")
    parser.add_argument("--steps", nargs="*", type=int, default=[100, 250, 500],
                        help="fit step counts (none: sample with freshly initialised parameters)")
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-test", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed sampling calls per sampler (the best is kept)")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()

    start, load_start = time.perf_counter(), os.getloadavg()[0]
    prog = gendsl.compile(gendsl.parse(MODEL))
    mech = prog.lowered().node("s").mechanism
    device = jax.devices()[0]
    print(f"{device.platform} ({device.device_kind}), {jax.device_count()} device(s); jax {jax.__version__}",
          file=sys.stderr, flush=True)

    fits, params = fit_rows(prog, args.steps, args.n_train, args.n_test, args.batch_size)
    node_params = (params or prog.init(jax.random.key(0)))["s"]
    samples = throughput_rows(mech, node_params, args.batches, args.repeats)

    print(f"\n### Sampling throughput: `token[{LENGTH}] of {VOCAB}`, transformer(layers=2, width=64, heads=4)\n")
    print("| draws per call | with cache (seq/s) | without cache (seq/s) | speed-up (wall) | speed-up (CPU time) "
          "| identical draws |")
    print("| ---: | ---: | ---: | ---: | ---: | :---: |")
    for r in samples:
        same = "yes" if r["identical"] else f"no ({100 * r['identical_fraction']:.2f}% of sequences)"
        print(f"| {r['n']} | {r['cache_seq_per_s']:,.0f} | {r['no_cache_seq_per_s']:,.0f} | "
              f"{r['speedup']:.1f}x | {r['speedup_cpu_time']:.1f}x | {same} |")
    if fits:
        print(f"\n### Held-out NLL against the true entropy (builtin markov, {args.n_train} training sequences, "
              f"{args.n_test} held out, batch {args.batch_size})\n")
        print("| steps | held-out NLL (nats/seq) | true entropy (nats/seq) | gap | fit wall time (s) |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for r in fits:
            print(f"| {r['steps']} | {r['heldout_nll']:.3f} | {r['true_nll']:.3f} | {r['gap_percent']:+.2f}% | "
                  f"{r['train_seconds']:.1f} |")
    print(f"\nTotal wall time {time.perf_counter() - start:.0f} s on {device.platform} with {os.cpu_count()} CPU(s); "
          f"1-minute load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.")
    print("\nCommand: `" + " ".join(["python benchmarks/factorize.py", *sys.argv[1:]]) + "`")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"platform": device.platform, "sampling": samples, "fit": fits}, indent=2))
    return 0 if all(r["identical"] for r in samples) else 1


if __name__ == "__main__":
    sys.exit(main())
