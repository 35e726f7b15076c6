"""Hostile run folders (issue 17): no write through a planted link, no empty --out, no resume
of another run, no finished run lost to a refused command, data the dtype would change refused."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import gendsl
from gendsl.cli import main
from gendsl.errors import GenDataError
from gendsl.numerics.confined import atomic_write_bytes, confined_dir, output_root

MODEL = "# a flow\rstill the comment\nmodel m {\n  data x: real[2]\n  x ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]))\n}\n"


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def fit(tmp_path: Path, out: Path, *extra: str) -> tuple[int, str]:
    model = tmp_path / "m.gen"
    if not model.exists():
        model.write_bytes(MODEL.encode())
    return run_cli(["fit", str(model), "--data", "builtin:moons", "--n", "300", "--steps", "4", "--batch-size", "64",
                    "--checkpoint-every", "2", "--out", str(out), "--quiet", *extra])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (not following links) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One finished run, trained once for the module."""
    folder = tmp_path_factory.mktemp("pristine")
    code, err = fit(folder, folder / "run")
    assert code == 0, err
    return folder / "run"


@pytest.fixture
def finished(tmp_path, pristine) -> Path:
    """A copy of the finished run for one test to attack."""
    out = tmp_path / "run"
    shutil.copytree(pristine, out, symlinks=True)
    return out


# -- the writer ------------------------------------------------------------------------------------


def test_the_writer_refuses_links_and_stays_inside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    root = output_root(tmp_path / "out")
    (root / "file").symlink_to(outside / "victim")
    (root / "folder").symlink_to(outside)
    with pytest.raises(GenDataError, match="symbolic link"):
        atomic_write_bytes(root / "file", b"x")
    with pytest.raises(GenDataError, match="symbolic link"):
        confined_dir(root, "folder")
    with pytest.raises(GenDataError, match="invalid folder name"):
        confined_dir(root, "..")
    with pytest.raises(GenDataError, match="empty"):
        output_root("")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(GenDataError, match="not a folder"):
        output_root(tmp_path / "a_file")
    with pytest.raises(GenDataError, match="which is a file"):
        output_root(tmp_path / "a_file" / "below")
    assert (outside / "victim").read_text() == "keep" and sorted(os.listdir(outside)) == ["victim"]
    # a normal write: whole file, the umask's permissions, no temporary file left
    atomic_write_bytes(root / "new", b"data")
    assert (root / "new").read_bytes() == b"data"
    assert (root / "new").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(os.listdir(root)) == ["file", "folder", "new"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("planted", ["params", "checkpoint", "model.gen", "metrics.json", "loss.png"])
def test_fit_never_writes_through_a_planted_link(tmp_path, planted):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    out = tmp_path / "run"
    out.mkdir()
    target = outside if planted in ("params", "checkpoint") else outside / "victim"
    (out / planted).symlink_to(target)
    code, err = fit(tmp_path, out, "--force")  # past the refusal to replace a run, to the writer
    assert code == 1 and "symbolic link" in err and "Traceback" not in err, err
    assert snapshot(outside) == {"victim": b"keep"}


def test_infer_never_writes_through_a_planted_link(tmp_path):
    outside = tmp_path / "victim.json"
    outside.write_text("keep")
    (tmp_path / "m.gen").write_text("model m {\n  data y: real[3]\n  mu ~ normal(0, 1)\n  y ~ normal(mu, 1)\n}\n")
    (tmp_path / "d.json").write_text(json.dumps({"y": [0.1, 0.3, -0.2]}))
    out = tmp_path / "post"
    out.mkdir()
    (out / "summary.json").symlink_to(outside)
    code, err = run_cli(["infer", str(tmp_path / "m.gen"), "--data", str(tmp_path / "d.json"), "--out", str(out),
                         "--chains", "1", "--samples", "20", "--warmup", "20"])
    assert code == 1 and "symbolic link" in err, err
    assert outside.read_text() == "keep"


def test_an_empty_out_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.gen").write_bytes(MODEL.encode())
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()) as err:
        main(["fit", "m.gen", "--data", "builtin:moons", "--steps", "2", "--out", ""])
    assert exit_info.value.code == 2 and "empty" in err.getvalue()
    assert sorted(os.listdir(tmp_path)) == ["m.gen"]


# -- finished runs survive, resumes are the same run --------------------------------------------


def test_the_saved_model_is_the_trained_text_byte_for_byte(finished):
    assert (finished / "model.gen").read_bytes() == MODEL.encode()


def test_a_finished_run_is_not_replaced_without_force(tmp_path, finished):
    before = snapshot(finished)
    code, err = fit(tmp_path, finished)
    assert code == 1 and "holds a finished run of model 'm'" in err and "--force" in err, err
    assert snapshot(finished) == before
    code, err = fit(tmp_path, finished, "--force", "--seed", "1")
    assert code == 0, err
    assert json.loads((finished / "run.json").read_text())["seed"] == 1


@pytest.mark.parametrize("change,named", [(("--seed", "1"), "seed"), (("--lr", "0.01"), "learning_rate"),
                                          (("--n", "400"), "data"), (("--batch-size", "32"), "batch_size")])
def test_a_resume_of_another_run_is_refused_and_the_run_kept(tmp_path, finished, change, named):
    before = snapshot(finished)
    code, err = fit(tmp_path, finished, "--resume", *change)
    assert code == 1 and "different run" in err and named in err, err
    assert snapshot(finished) == before


def test_a_resume_of_another_model_text_is_refused(tmp_path, finished):
    before = snapshot(finished)
    (tmp_path / "m.gen").write_bytes(MODEL.replace("hidden=[8]", "hidden=[8] ").encode())
    code, err = fit(tmp_path, finished, "--resume")
    assert code == 1 and "model_text" in err, err
    assert snapshot(finished) == before


def test_the_same_command_resumes(tmp_path, finished):
    code, err = fit(tmp_path, finished, "--resume")
    assert code == 0, err


# -- data the computation's dtype would change --------------------------------------------------


@pytest.mark.parametrize("value,words", [(4294967301, "outside the range of the int32"),
                                         (2**40, "outside the range of the int32"),
                                         (1e20, "outside the range of the int32"),
                                         (3 + 1j, "complex numbers")])
def test_integers_that_would_wrap_are_refused(value, words):
    prog = gendsl.compile(gendsl.parse("model m {\n  data k: int[2]\n  r ~ gamma(2, 1)\n  k ~ poisson(r)\n}"))
    with pytest.raises(GenDataError, match=words) as info:
        prog.infer({"k": np.array([1, value])}, num_chains=1, num_samples=5, num_warmup=5)
    assert "'k'" in info.value.message and "[1]" in info.value.message


def test_reals_beyond_float32_are_refused_where_the_model_computes_in_float32():
    prog = gendsl.compile(gendsl.parse("model m {\n  data x: real[2]\n  x ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]))\n}"))
    with pytest.raises(GenDataError, match=r"'x' holds 1e\+39 at index \[1, 0\]"):
        prog.fit({"x": np.array([[0.0, 1.0], [1e39, 0.0]])}, steps=1, progress=False)


def test_control_bytes_in_messages_are_escaped(tmp_path):
    """A data key holding terminal escapes is named in the error, escaped, with or without a line."""
    (tmp_path / "m.gen").write_bytes(MODEL.encode())
    hostile = "x\x1b]0;owned\x07\x1b[2J"
    np.savez(tmp_path / "d.npz", **{hostile: np.zeros((20, 2))})
    code, err = run_cli(["fit", str(tmp_path / "m.gen"), "--data", str(tmp_path / "d.npz"), "--steps", "2",
                         "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 1 and "\x1b" not in err and "\x07" not in err and "\\x1b" in err, err
    assert GenDataError(hostile).render() == "error: x\\x1b]0;owned\\x07\\x1b[2J"


def test_a_warning_is_one_clean_line(tmp_path, monkeypatch):
    """A warning raised during a command reaches the terminal as ``warning: MESSAGE``, without
    the Python source line that ``warnings`` prints by default."""
    import warnings

    from gendsl import cli

    def noisy(args):
        warnings.warn("the learning rate was halved after a non-finite loss", RuntimeWarning)
        return 0

    monkeypatch.setattr(cli, "_cmd_check", noisy)
    (tmp_path / "m.gen").write_bytes(MODEL.encode())
    code, err = run_cli(["check", str(tmp_path / "m.gen")])
    assert code == 0 and err == "warning: the learning rate was halved after a non-finite loss\n", err


def test_the_training_log_has_a_row_per_chunk(finished):
    """``training_log.csv``: step, mean loss, validation loss (validation is on by default), time."""
    lines = (finished / "training_log.csv").read_text().splitlines()
    assert lines[0] == "step,loss,validation_loss,seconds"
    rows = [line.split(",") for line in lines[1:]]
    steps = [int(r[0]) for r in rows]
    assert steps == sorted(steps) and steps[-1] <= 4 and len(rows) >= 1
    assert all(np.isfinite(float(r[1])) and np.isfinite(float(r[2])) and float(r[3]) >= 0 for r in rows)


def test_a_log_callback_sees_every_chunk():
    prog = gendsl.compile(gendsl.parse("model m {\n  data x: real[2]\n  x ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]))\n}"))
    rows = []
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    prog.fit({"x": x}, steps=30, batch_size=50, progress=False, validation=0.2, eval_every=10, log=rows.append)
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert all(r["validation_loss"] is not None and np.isfinite(r["loss"]) for r in rows)


# -- reading: no hang on a pipe, no endless device, no zip bomb, no recursion -------------------


def _bomb(path: Path, rows: int) -> None:
    """An ``.npz`` of a few kB whose one member's header declares ``rows * 2`` float64s (a real
    bomb would follow with that many compressed zeros; the header is refused before them)."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (rows, 2)})
            member.write(bytes(2**16))


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    _bomb(tmp_path / "d.npz", 2**27)  # declares 2 GiB
    assert (tmp_path / "d.npz").stat().st_size < 2**20
    (tmp_path / "m.gen").write_bytes(MODEL.encode())
    code, err = run_cli(
        ["fit", str(tmp_path / "m.gen"), "--data", str(tmp_path / "d.npz"), "--steps", "2", "--out", str(tmp_path / "run")])
    assert code == 1 and ("zip bomb" in err or "declares shape" in err), err


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "folder"])
def test_a_run_folder_whose_files_are_not_files_is_refused(tmp_path, finished, target):
    victim = finished / "run.json"
    victim.unlink()
    if target == "fifo":
        os.mkfifo(victim)
    elif target == "folder":
        victim.mkdir()
    else:
        victim.symlink_to(target)
    code, err = run_cli(["sample", str(finished), "--n", "5", "--out", str(tmp_path / "s.npy")])
    assert code == 1 and ("not a regular file" in err or "is a folder" in err), err


def test_json_nested_too_deep_is_a_data_error(tmp_path):
    (tmp_path / "m.gen").write_text("model m {\n  data y: real\n  mu ~ normal(0, 1)\n  y ~ normal(mu, 1)\n}\n")
    (tmp_path / "d.json").write_text('{"y": ' + "[" * 100000 + "]" * 100000 + "}")
    code, err = run_cli(["infer", str(tmp_path / "m.gen"), "--data", str(tmp_path / "d.json"), "--out",
                         str(tmp_path / "post")])
    assert code == 1 and "too deeply" in err, err
