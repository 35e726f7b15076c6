"""The persistent compilation cache: on by default, moved or turned off by GENDSL_COMPILE_CACHE;
a second process that builds the same posterior sampler loads its trace and its compiled program
instead of making them, and draws exactly what a process without any cache draws."""

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
                  "compile_seconds": post.compile_seconds, "draws": post.samples["mu"].tolist()}))
"""


def run(env):
    env = {k: v for k, v in os.environ.items() if k not in ("GENDSL_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")} | env
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_compiled_sampler(tmp_path):
    cache = tmp_path / "cache"
    first = run({"GENDSL_COMPILE_CACHE": str(cache)})
    assert first["folder"] == str(cache) and first["hits"] == 0
    traced = sorted(p.name.split("-")[0] for p in (cache / "traced").iterdir())
    assert traced == ["infer", "starts"]
    second = run({"GENDSL_COMPILE_CACHE": str(cache)})
    assert second["hits"] >= 2  # both programs' XLA executables came from the cache
    assert sorted(p.name.split("-")[0] for p in (cache / "traced").iterdir()) == traced  # and their traces
    uncached = run({"GENDSL_COMPILE_CACHE": "0"})
    assert first["draws"] == second["draws"] == uncached["draws"]
    for path in (cache / "traced").iterdir():  # a damaged trace is made again
        path.write_bytes(b"not a serialised program")
    assert run({"GENDSL_COMPILE_CACHE": str(cache)})["draws"] == first["draws"]
    assert all(p.stat().st_size > 1000 for p in (cache / "traced").iterdir())


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
