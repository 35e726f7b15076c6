"""The persistent compilation cache: on by default, moved or turned off by GENDSL_COMPILE_CACHE,
and a second process that builds the same posterior sampler loads it instead of compiling it."""

import json
import os
import subprocess
import sys

import jax
import pytest

from gendsl.numerics import compile_cache

#: infer a small posterior in a fresh process; print the cache folder, the cache hits (JAX's
#: monitoring events) and the seconds spent compiling
SCRIPT = """
import json, jax
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
import gendsl
from gendsl.numerics import compile_cache
prog = gendsl.compile(gendsl.parse("model m {\\n  data y: real[3]\\n  mu ~ normal(0, 1)\\n  y ~ normal(mu, 1)\\n}\\n"))
post = prog.infer({"y": [0.1, 0.5, -0.2]}, key=jax.random.key(0), num_chains=2, num_samples=50, num_warmup=50)
folder = compile_cache.folder()
print(json.dumps({"folder": None if folder is None else str(folder), "hits": len(hits),
                  "compile_seconds": post.compile_seconds}))
"""


def run(env):
    env = {k: v for k, v in os.environ.items() if k not in ("GENDSL_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")} | env
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_compiled_sampler(tmp_path):
    first = run({"GENDSL_COMPILE_CACHE": str(tmp_path / "cache")})
    assert first["folder"] == str(tmp_path / "cache") and first["hits"] == 0
    assert any((tmp_path / "cache").iterdir())
    second = run({"GENDSL_COMPILE_CACHE": str(tmp_path / "cache")})
    assert second["hits"] >= 1


@pytest.fixture
def restored():
    """Put back this session's cache folder after a test moved it."""
    before = compile_cache.folder()
    yield
    compile_cache.configure(before)


def test_default_folder_and_switch_off(tmp_path, monkeypatch, restored):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GENDSL_COMPILE_CACHE")
    compile_cache.configure(None)
    assert compile_cache.enable_default() == tmp_path / "xdg" / "gendsl" / "jax"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xdg" / "gendsl" / "jax")
    for off in ("0", "off"):
        compile_cache.configure(None)
        monkeypatch.setenv("GENDSL_COMPILE_CACHE", off)
        assert compile_cache.enable_default() is None and compile_cache.folder() is None
    # a folder given to JAX by the user is kept
    compile_cache.configure(tmp_path / "mine")
    monkeypatch.setenv("GENDSL_COMPILE_CACHE", str(tmp_path / "other"))
    assert compile_cache.enable_default() == tmp_path / "mine" and not (tmp_path / "other").exists()


def test_an_unwritable_folder_turns_the_cache_off(tmp_path, restored):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert compile_cache.configure(blocker / "cache") is None
    assert jax.config.jax_compilation_cache_dir is None
