"""Training and sampling throughput against the number of devices.

    python benchmarks/scaling.py [--devices 1 2 4] [--steps 200] [--batch 1024]

Each device count runs in its own process with XLA_FLAGS=--xla_force_host_platform_device_count=4
(simulated CPU devices share this machine's cores, so the figures show the overhead of the
sharded program, not a speed-up; on a GPU host run it with real devices). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent('''
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--real", action="store_true", help="use the real devices (GPU host) instead of simulated CPUs")
    args = ap.parse_args()
    env = dict(os.environ)
    if not args.real:
        env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={max(args.devices)}", JAX_PLATFORMS="cpu")
    rows = []
    for d in args.devices:
        out = subprocess.run([sys.executable, "-c", WORKER, str(d), str(args.steps), str(args.batch)], env=env,
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"| devices ({base['platform']}) | train examples/s | ratio | samples/s | ratio | final loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['devices']} | {r['train_examples_per_s']:.0f} | {r['train_examples_per_s'] / base['train_examples_per_s']:.2f} "
              f"| {r['samples_per_s']:.0f} | {r['samples_per_s'] / base['samples_per_s']:.2f} | {r['final_loss']:.4f} |")


if __name__ == "__main__":
    main()
