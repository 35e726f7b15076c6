"""Golden bad programs: each tests/golden/bad/NAME.gen must fail `gendsl check` with exit 1 and
print exactly tests/golden/bad/NAME.err (FILE:LINE:COL, the line, a caret; no traceback).

Regenerate after an intended message change with: GENDSL_UPDATE_GOLDEN=1 pytest tests/lang
"""

import os

import pytest
from conftest import GOLDEN

from gendsl.cli import main

BAD = sorted((GOLDEN / "bad").glob("*.gen"))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_program_gives_its_golden_message(path, capsys, monkeypatch):
    monkeypatch.chdir(GOLDEN / "bad")
    code = main(["check", path.name])
    out = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out.err
    first = out.err.splitlines()[0]
    assert first.startswith(f"{path.name}:") and ": error: " in first
    expected = path.with_suffix(".err")
    if os.environ.get("GENDSL_UPDATE_GOLDEN"):
        expected.write_text(out.err)
    assert out.err == expected.read_text()


def test_every_error_has_line_and_column(capsys, monkeypatch):
    monkeypatch.chdir(GOLDEN / "bad")
    for path in BAD:
        main(["check", path.name])
        for line in capsys.readouterr().err.splitlines():
            if ": error: " in line:
                file, lineno, col = line.split(":")[:3]
                assert file == path.name and lineno.isdigit() and col.isdigit(), line


def test_check_reports_every_error_of_a_file(tmp_path, capsys):
    path = tmp_path / "many.gen"
    path.write_text("model m {\n  a ~ normal(b, 1)\n  c ~ nromal(0, 1)\n  d = exq(a)\n}\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count(": error: ") == 3
    assert ":2:14:" in err and ":3:7:" in err and ":4:7:" in err


def test_good_file_exits_zero_with_the_plan(capsys):
    assert main(["check", str(GOLDEN / "good" / "language_examples.gen")]) == 0
    out = capsys.readouterr().out
    assert "model eight_schools" in out and "ok (8 models)" in out


def test_missing_file_is_a_clear_error(capsys):
    assert main(["check", "/nonexistent/model.gen"]) == 1
    assert "cannot read /nonexistent/model.gen" in capsys.readouterr().err
