import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# the persistent compilation cache of this test session (and the CLI processes it starts), not the user's
_CACHE = tempfile.mkdtemp(prefix="gendsl-test-jax-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("GENDSL_COMPILE_CACHE", _CACHE)
sys.path.insert(0, str(Path(__file__).parent))

GOLDEN = Path(__file__).parent / "golden"
