"""Time to first draw of ``gendsl infer`` on the posteriordb models, each in a fresh process: with
an empty compilation cache, then with the cache the first run left (JAX's persistent XLA cache
and gendsl's store of traced samplers), then with the cache turned off.

    python benchmarks/time_to_first_draw.py [--models eight_schools kilpisjarvi ...] [--repeats 2]

Each run is a new Python process started from nothing: "process" is the time from its start to
the posterior in hand (imports included), "infer" the time of the ``infer`` call alone
(tracing, compilation or loading, the starting points and 4 chains x 1000 warm-up x 1000 draws),
"sampling" the compiled program's own run. The cold and warm runs alternate between models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: one process: start, import, infer, report (the start time comes from the parent's clock)
SCRIPT = """
import json, sys, time, warnings
started = float(sys.argv[2])
import jax
import gendsl
sys.path.insert(0, {bench!r})
from inference_posteriordb import DATA, MODELS
name = sys.argv[1]
data = json.loads((DATA / f"{{name}}.json").read_text())
prog = gendsl.compile(gendsl.parse(MODELS[name]))
t0 = time.time()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    post = prog.infer(data, key=jax.random.key(0), progress=False)
done = time.time()
print(json.dumps({{"process": done - started, "infer": done - t0, "sampling": post.sampling_seconds,
                  "compile": post.compile_seconds}}))
"""

MODELS = ["eight_schools", "kilpisjarvi", "arK", "logearn_height", "logmesquite", "gp_pois_regr"]


def one(name: str, cache: str) -> dict:
    import time

    env = dict(os.environ, GENDSL_COMPILE_CACHE=cache)
    code = SCRIPT.format(bench=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code, name, repr(time.time())], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows = {name: {"cold": [], "warm": [], "off": []} for name in args.models}
    for _ in range(args.repeats):
        for name in args.models:
            with tempfile.TemporaryDirectory() as cache:
                rows[name]["cold"].append(one(name, cache))
                rows[name]["warm"].append(one(name, cache))
            rows[name]["off"].append(one(name, "0"))
    print("| model | cache | process (s) | infer (s) | sampling (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name, runs in rows.items():
        for kind, rs in runs.items():
            mean = {k: sum(r[k] for r in rs) / len(rs) for k in ("process", "infer", "sampling")}
            print(f"| {name} | {kind} | {mean['process']:.2f} | {mean['infer']:.2f} | {mean['sampling']:.2f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
