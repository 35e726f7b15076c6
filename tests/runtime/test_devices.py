"""Data-parallel training, sharded sampling and chains split across devices (``infer``) on 4
simulated CPU devices equal 1-device results.

Each check runs in a subprocess, since the simulated device count is fixed when JAX starts.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import json, jax, numpy as np, gendsl
    prog = gendsl.compile(gendsl.parse("model m {\\n  data x: real[2]\\n  x ~ factorize(made(hidden=[16], components=2))\\n}\\n"))
    x = np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32)
    one = prog.fit({"x": x}, steps=40, key=jax.random.key(3), batch_size=64, progress=False)
    four = prog.fit({"x": x}, steps=40, key=jax.random.key(3), batch_size=64, progress=False, devices=4)
    leaves1, leaves4 = jax.tree_util.tree_leaves(one.params), jax.tree_util.tree_leaves(four.params)
    s1 = prog.sample(one.params, jax.random.key(1), 64)["x"]
    s4 = prog.sample(one.params, jax.random.key(1), 64, devices=4)["x"]
    print(json.dumps({
        "devices": len(jax.devices()),
        "loss_rel": float(np.max(np.abs(one.losses - four.losses) / np.abs(one.losses))),
        "param_abs": max(float(np.max(np.abs(a - b))) for a, b in zip(leaves1, leaves4)),
        "param_devices": len(jax.tree_util.tree_leaves(four.state.params)[0].sharding.device_set),
        "sample_abs": float(np.max(np.abs(s1 - s4))),
        "sample_spec": str(s4.sharding.spec),
        "sample_shards": len(s4.addressable_shards),
    }))
''')


@pytest.fixture(scope="module")
def result():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_simulated_devices_exist(result):
    assert result["devices"] == 4


def test_data_parallel_fit_equals_one_device(result):
    assert result["loss_rel"] < 1e-4
    assert result["param_abs"] < 1e-4
    assert result["param_devices"] == 4  # replicated on every device


def test_sharded_sampling_equals_one_device(result):
    assert result["sample_abs"] == 0.0
    assert result["sample_spec"] in ("PartitionSpec('data',)", "P('data',)") and result["sample_shards"] == 4


def test_asking_for_too_many_devices_is_a_clear_error():
    import gendsl
    from gendsl.numerics.devices import make_mesh

    with pytest.raises(gendsl.GenDataError, match="xla_force_host_platform_device_count"):
        make_mesh(64)


# -- posterior inference: chains split across devices ------------------------------------------------

# A linear regression: a Gaussian posterior over (a, b), so the leapfrog dynamics are linear and
# rounding differences are not amplified from one transition to the next (on a funnel such as eight
# schools they are: see docs/scaling.md).
REGRESSION = ("model reg {\n  data N: int\n  data x: real[N]\n  data y: real[N]\n"
              "  a ~ normal(0, 5)\n  b ~ normal(0, 5)\n  y ~ normal(a + b * x, 1)\n}\n")
REGRESSION_DATA = {"N": 6, "x": [0, 1, 2, 3, 4, 5], "y": [1.2, 2.3, 2.9, 4.1, 5.2, 5.8]}
FOUR = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INFER_SCRIPT = textwrap.dedent('''
    import importlib, json, sys, jax, numpy as np, gendsl
    infer_module = importlib.import_module("gendsl.inference.infer")
    regression = gendsl.compile(gendsl.parse(sys.argv[1]))
    schools = gendsl.compile(gendsl.load(sys.argv[3] + "/examples/eight_schools.gen"))
    schools_data = json.load(open(sys.argv[3] + "/examples/eight_schools.json"))
    kw = dict(num_chains=4, num_warmup=100, num_samples=100)
    seen = {}

    def observe(compiled, draws, stats, tuning):
        x = next(iter(draws.values()))
        text = compiled.as_text()
        seen.update(spec=str(x.sharding.spec), devices=len(x.sharding.device_set),
                    shards=sorted((s.device.id, list(s.data.shape)) for s in x.addressable_shards),
                    hlo_full=("f64[4,100" in text), hlo_local=("f64[1,100" in text))

    def pair(prog, data, **options):
        """1 device, then 4 (recording what the compiled program returned)."""
        infer_module._observe = None
        one = prog.infer(data, **kw, **options)
        seen.clear()
        infer_module._observe = observe
        four = prog.infer(data, devices=4, **kw, **options)
        infer_module._observe = None
        return one, four, dict(seen)

    out = {"devices": len(jax.devices())}
    # defaults (vectorized chains) on the Gaussian posterior
    one, four, placed = pair(regression, json.loads(sys.argv[2]), key=jax.random.key(7))
    out["vectorized"] = {
        "rel": {k: float(np.max(np.abs(one.samples[k] - four.samples[k]) / np.maximum(np.abs(one.samples[k]), 1e-3)))
                for k in one.samples},
        "shape": list(four.samples["a"].shape), "same_tree_sizes": bool(np.array_equal(one.num_steps, four.num_steps)),
        **placed}
    # sequential chains on the eight-schools funnel
    one, four, placed = pair(schools, schools_data, key=jax.random.key(0), chain_method="sequential")
    out["sequential"] = {"equal": {k: bool(np.array_equal(one.samples[k], four.samples[k])) for k in one.samples},
                         "shape": list(four.samples["mu"].shape), **placed}
    try:
        regression.infer(json.loads(sys.argv[2]), devices=3, **kw)
        out["error"] = None
    except gendsl.GenDataError as err:
        out["error"] = str(err)
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def infer_result():
    env = {**os.environ, **FOUR}
    out = subprocess.run([sys.executable, "-c", INFER_SCRIPT, REGRESSION, json.dumps(REGRESSION_DATA), ROOT], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_infer_on_four_devices_gives_the_one_device_draws(infer_result):
    r = infer_result["vectorized"]
    assert infer_result["devices"] == 4 and r["shape"] == [4, 100]
    # Every chain has the same key, start and kernel on 1 and on 4 devices, so these are the same
    # draws: the same number of leapfrog steps in every transition, and values equal up to
    # rounding. Not bit for bit: XLA compiles a 4-chain batch (one device) and a 1-chain batch (each
    # of four devices) with some reductions summed in different orders (a few 1e-14 in one
    # log-density evaluation); on this Gaussian posterior that stays ~1e-12 after 200 transitions
    # (measured), so 1e-6 is a wide margin that any different chain would still exceed.
    assert r["same_tree_sizes"]
    assert max(r["rel"].values()) < 1e-6, r["rel"]


def test_sequential_chains_on_four_devices_are_bit_for_bit_the_one_device_draws(infer_result):
    # each device runs its own chains with the program of one chain: no rounding difference at all,
    # even on the eight-schools funnel, where vectorized chains drift apart after a few hundred
    # transitions
    r = infer_result["sequential"]
    assert r["shape"] == [4, 100] and r["equal"] == {"mu": True, "tau": True, "theta_raw": True, "theta": True}


@pytest.mark.parametrize("method", ["vectorized", "sequential"])
def test_infer_splits_the_chains_across_devices(infer_result, method):
    r = infer_result[method]
    # the draws as the compiled program returns them, before they become numpy arrays
    assert r["spec"] in ("PartitionSpec('data',)", "P('data',)") and r["devices"] == 4
    assert r["shards"] == [[0, [1, 100]], [1, [1, 100]], [2, [1, 100]], [3, [1, 100]]]
    # and the program itself is partitioned: each device holds one chain's draws, never all four
    assert r["hlo_local"] and not r["hlo_full"]


def test_infer_chains_not_a_multiple_of_devices_is_a_clear_error(infer_result):
    assert infer_result["error"] is not None
    assert "num_chains (4)" in infer_result["error"] and "number of devices (3)" in infer_result["error"]


CLI_SCRIPT = textwrap.dedent('''
    import json, sys
    from gendsl.cli import main
    model, data, out = sys.argv[1:4]
    common = ["infer", model, "--data", data, "--chains", "4", "--samples", "100", "--warmup", "100", "--seed", "3"]
    codes = [main([*common, "--out", out + "/one"]), main([*common, "--out", out + "/four", "--devices", "4"]),
             main([*common, "--out", out + "/bad", "--devices", "3"])]
    print(json.dumps(codes))
''')


def test_cli_infer_devices_writes_the_one_device_draws(tmp_path):
    """`gendsl infer ... --devices 4` (the console script's entry point, in one 4-device process to
    compile less) writes the draws of the same command without --devices."""
    import numpy as np

    (tmp_path / "reg.gen").write_text(REGRESSION)
    (tmp_path / "data.json").write_text(json.dumps(REGRESSION_DATA))
    out = subprocess.run([sys.executable, "-c", CLI_SCRIPT, str(tmp_path / "reg.gen"), str(tmp_path / "data.json"),
                          str(tmp_path)], env={**os.environ, **FOUR}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, 0, 1], out.stderr[-2000:]
    with np.load(tmp_path / "one" / "draws.npz") as one, np.load(tmp_path / "four" / "draws.npz") as four:
        assert set(one.files) == set(four.files) == {"a", "b"}
        for k in one.files:
            assert one[k].shape == four[k].shape == (4, 100)
            np.testing.assert_allclose(four[k], one[k], rtol=1e-6, atol=1e-9)  # tolerance: see the test above
    # --devices 3 with 4 chains: the user's error, rendered without a traceback
    assert "num_chains (4) must be a multiple of the number of devices (3)" in out.stderr
    assert "Traceback" not in out.stderr
