"""Bad data for ``gendsl fit`` / ``gendsl infer`` through the command line.

Each bad file (missing or extra variables, wrong shapes and dtypes, NaN / inf, values outside
the support, empty arrays, a .npy for several variables, corrupt or pickled archives, malformed
JSON) makes the command exit 1 with a message naming the variable (or the file), no traceback,
and nothing written into the ``--out`` folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from gendsl.cli import main

ONE = """model one {
  data x: real[2]
  x ~ factorize(made(hidden=[8]))
}
"""

TWO = """model two {
  data x: real[2]
  data y: positive
  data s: token[3] of 4
  x ~ normal(0, 1)
  y ~ exponential(1)
  s ~ factorize(mlp(hidden=[8]))
}
"""

SCHOOLS = """model schools {
  data J: int
  data y: real[J]
  data sigma: positive[J]
  mu ~ normal(0, 5)
  tau ~ half_normal(5)
  theta: real[J] ~ normal(mu, tau)
  y ~ normal(theta, sigma)
}
"""

N = 40
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, 2)).astype(np.float32)
Y = RNG.exponential(size=N).astype(np.float32)
S = RNG.integers(0, 4, size=(N, 3)).astype(np.int32)
GOOD_SCHOOLS = {"J": 3, "y": [28.0, 8.0, -3.0], "sigma": [15.0, 10.0, 16.0]}


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def _nothing_written(out: Path) -> bool:
    """The --out folder is absent or holds nothing (an error log, if one is written, aside)."""
    return not out.exists() or not [p for p in out.rglob("*") if not p.name.startswith("error")]


@pytest.fixture
def files(tmp_path):
    """The three model files in ``tmp_path``."""
    for name, text in (("one", ONE), ("two", TWO), ("schools", SCHOOLS)):
        (tmp_path / f"{name}.gen").write_text(text)
    return tmp_path


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _npy(path: Path, array, allow_pickle: bool = False) -> str:
    np.save(path, array, allow_pickle=allow_pickle)
    return str(path)


def _json(path: Path, obj=None, text: str | None = None) -> str:
    path.write_text(text if text is not None else json.dumps(obj))
    return str(path)


def _corrupt_npz(path: Path) -> str:
    path.write_bytes(b"PK\x03\x04 this is not a zip archive" + bytes(range(256)))
    return str(path)


def _pickled_npz(path: Path) -> str:
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    return str(path)


def _pickle_file(path: Path) -> str:
    path.write_bytes(pickle.dumps({"x": X}))
    return str(path)


#: case -> (model, how to write the data file into a folder, what the message must name)
FIT_CASES = {
    "missing_variable": ("two", lambda d: _npz(d / "a.npz", x=X, y=Y), "'s'"),
    "extra_variable": ("two", lambda d: _npz(d / "a.npz", x=X, y=Y, s=S, z=Y), "'z'"),
    "wrong_event_shape": ("one", lambda d: _npy(d / "a.npy", np.zeros((N, 3), np.float32)), "'x'"),
    "missing_event_axis": ("one", lambda d: _npy(d / "a.npy", np.zeros(N, np.float32)), "'x'"),
    "scalar_for_a_vector": ("one", lambda d: _json(d / "a.json", {"x": 1.5}), "'x'"),
    "extra_axis": ("one", lambda d: _npy(d / "a.npy", np.zeros((N, 2, 2), np.float32)), "'x'"),
    "rows_disagree": ("two", lambda d: _npz(d / "a.npz", x=X, y=Y[:-5], s=S), "'y': 35"),
    "strings_npy": ("one", lambda d: _npy(d / "a.npy", np.full((N, 2), "ab")), "'x'"),
    "strings_json": ("one", lambda d: _json(d / "a.json", {"x": [["a", "b"]] * N}), "'x'"),
    "ragged_json": ("one", lambda d: _json(d / "a.json", {"x": [[1.0, 2.0], [3.0]] * N}), "'x'"),
    "nan": ("one", lambda d: _npy(d / "a.npy", np.where(np.arange(N)[:, None] == 7, np.nan, X)), "'x'"),
    "inf": ("one", lambda d: _npy(d / "a.npy", np.where(np.arange(N)[:, None] == 3, np.inf, X)), "'x'"),
    "nan_in_json": ("one", lambda d: _json(d / "a.json", text=json.dumps({"x": [[float("nan"), 1.0]] * N})), "'x'"),
    "negative_for_positive": ("two", lambda d: _npz(d / "a.npz", x=X, y=-Y, s=S), "'y'"),
    "zero_for_positive": ("two", lambda d: _npz(d / "a.npz", x=X, y=np.zeros(N, np.float32), s=S), "'y'"),
    "token_equal_to_vocab": ("two", lambda d: _npz(d / "a.npz", x=X, y=Y, s=np.full((N, 3), 4, np.int32)), "'s'"),
    "negative_token": ("two", lambda d: _npz(d / "a.npz", x=X, y=Y, s=-S - 1), "'s'"),
    "fractional_token": ("two", lambda d: _npz(d / "a.npz", x=X, y=Y, s=S + 0.5), "'s'"),
    "empty_array": ("one", lambda d: _npy(d / "a.npy", np.zeros((0, 2), np.float32)), "'x'"),
    "empty_json_list": ("one", lambda d: _json(d / "a.json", {"x": []}), "'x'"),
    "npy_for_two_variables": ("two", lambda d: _npy(d / "a.npy", X), "a.npy"),
    "corrupt_npz": ("one", lambda d: _corrupt_npz(d / "a.npz"), "a.npz"),
    "truncated_npy": ("one", lambda d: (d / "a.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr'") and str(d / "a.npy"), "a.npy"),
    "pickled_npy": ("one", lambda d: _npy(d / "a.npy", np.array([{"x": 1}, None], dtype=object), allow_pickle=True), "a.npy"),
    "pickled_npz": ("one", lambda d: _pickled_npz(d / "a.npz"), "a.npz"),
    "pickle_named_npy": ("one", lambda d: _pickle_file(d / "a.npy"), "a.npy"),
    "malformed_json": ("one", lambda d: _json(d / "a.json", text='{"x": [[1, 2], [3, 4]'), "a.json"),
    "json_not_an_object": ("one", lambda d: _json(d / "a.json", [[1, 2], [3, 4]]), "a.json"),
    "not_utf8_json": ("one", lambda d: (d / "a.json").write_bytes(b'{"x": "caf\xe9"}') and str(d / "a.json"), "a.json"),
    "missing_file": ("one", lambda d: str(d / "nowhere.npy"), "nowhere.npy"),
    "unknown_suffix": ("one", lambda d: _json(d / "a.csv", text="1,2\n3,4\n"), "a.csv"),
    "a_folder": ("one", lambda d: (d / "dir.npz").mkdir() or str(d / "dir.npz"), "dir.npz"),
}


def _assert_rejected(code: int, err: str, names: str, out: Path) -> None:
    assert code == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert "error" in err and names in err, err
    assert _nothing_written(out), sorted(str(p) for p in out.rglob("*"))


@pytest.mark.parametrize("case", sorted(FIT_CASES))
def test_fit_rejects_bad_data(case, files):
    model, write, names = FIT_CASES[case]
    data = write(files)
    out = files / "out"
    code, err = run_cli(["fit", str(files / f"{model}.gen"), "--data", data, "--steps", "2", "--out", str(out),
                         "--batch-size", "8", "--quiet"])
    _assert_rejected(code, err, names, out)


def test_fit_rejects_bad_data_into_an_existing_folder_without_touching_it(files):
    out = files / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    data = _npz(files / "a.npz", x=X, y=-Y, s=S)
    code, err = run_cli(["fit", str(files / "two.gen"), "--data", data, "--steps", "2", "--out", str(out), "--quiet"])
    assert code == 1 and "'y'" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_fit_accepts_the_good_data(files):
    """The control: the same model and shapes, good values, train and write the run."""
    data = _npz(files / "good.npz", x=X, y=Y, s=S)
    out = files / "out"
    code, err = run_cli(["fit", str(files / "two.gen"), "--data", data, "--steps", "2", "--out", str(out),
                         "--batch-size", "8", "--quiet"])
    assert code == 0, err
    assert (out / "run.json").is_file() and (out / "metrics.json").is_file()


INFER_CASES = {
    "missing_variable": (lambda d: _json(d / "a.json", {"J": 3, "y": GOOD_SCHOOLS["y"]}), "'sigma'"),
    "extra_variable": (lambda d: _json(d / "a.json", {**GOOD_SCHOOLS, "z": [1.0]}), "'z'"),
    "length_disagrees_with_J": (lambda d: _json(d / "a.json", {**GOOD_SCHOOLS, "y": [1.0, 2.0, 3.0, 4.0]}), "'y'"),
    "matrix_for_a_vector": (lambda d: _json(d / "a.json", {**GOOD_SCHOOLS, "y": [[1.0, 2.0, 3.0]] * 2}), "'y'"),
    "strings": (lambda d: _json(d / "a.json", {**GOOD_SCHOOLS, "y": ["a", "b", "c"]}), "'y'"),
    "nan": (lambda d: _json(d / "a.json", text=json.dumps({**GOOD_SCHOOLS, "y": [1.0, float("nan"), 2.0]})), "'y'"),
    "inf": (lambda d: _json(d / "a.json", text=json.dumps({**GOOD_SCHOOLS, "y": [1.0, float("inf"), 2.0]})), "'y'"),
    "null": (lambda d: _json(d / "a.json", {**GOOD_SCHOOLS, "y": [1.0, None, 2.0]}), "'y'"),
    "negative_for_positive": (lambda d: _json(d / "a.json", {**GOOD_SCHOOLS, "sigma": [15.0, -1.0, 16.0]}), "'sigma'"),
    "fractional_J": (lambda d: _json(d / "a.json", {**GOOD_SCHOOLS, "J": 2.5}), "'J'"),
    "negative_J": (lambda d: _json(d / "a.json", {**GOOD_SCHOOLS, "J": -3}), "'J'"),
    "empty": (lambda d: _json(d / "a.json", {"J": 0, "y": [], "sigma": []}), "'"),
    "malformed_json": (lambda d: _json(d / "a.json", text='{"J": 3, "y": [1, 2'), "a.json"),
    "json_not_an_object": (lambda d: _json(d / "a.json", [1, 2, 3]), "a.json"),
    "corrupt_npz": (lambda d: _corrupt_npz(d / "a.npz"), "a.npz"),
    "pickled_npz": (lambda d: _pickled_npz(d / "a.npz"), "a.npz"),
    "npy": (lambda d: _npy(d / "a.npy", X), "a.npy"),
    "missing_file": (lambda d: str(d / "nowhere.json"), "nowhere.json"),
}


@pytest.mark.parametrize("case", sorted(INFER_CASES))
def test_infer_rejects_bad_data(case, files):
    write, names = INFER_CASES[case]
    data = write(files)
    out = files / "post"
    code, err = run_cli(["infer", str(files / "schools.gen"), "--data", data, "--out", str(out),
                         "--chains", "1", "--samples", "10", "--warmup", "10"])
    _assert_rejected(code, err, names, out)


def test_version_and_bad_counts_are_clean_messages(capsys):
    """--version prints the version; a count that is not a positive whole number (or devices that
    are neither a number nor 'all') is refused by the parser with a message, exit status 2."""
    from importlib.metadata import version

    from gendsl.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and f"gendsl {version('gendsl')}" in capsys.readouterr().out
    for argv, words in [(["fit", "m.gen", "--data", "builtin:moons", "--steps", "0", "--out", "o"], "--steps"),
                        (["sample", "run", "--n", "-3", "--out", "s.npy"], "--n"),
                        (["sample", "run", "--n", "5", "--out", "s.npy", "--devices", "gpu"], "--devices")]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and words in err and "Traceback" not in err, err


def test_written_files_follow_the_umask(tmp_path):
    import os

    from gendsl.numerics.confined import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600
