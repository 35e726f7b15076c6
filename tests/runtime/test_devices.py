"""Data-parallel training and sharded sampling on 4 simulated CPU devices equal 1-device results.

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
    from gendsl.runtime.devices import make_mesh

    with pytest.raises(gendsl.GenDataError, match="xla_force_host_platform_device_count"):
        make_mesh(64)
