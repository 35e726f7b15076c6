"""The suggestion in each Stan-habit message (golden files tests/golden/bad/stan_*.gen) is a
statement gendsl accepts: the offending line, replaced by the quoted fix, checks clean."""

import re

import pytest
from conftest import GOLDEN

from gendsl.cli import main

CASES = ["stan_bounds_after_dims", "stan_declaration", "stan_truncation"]


@pytest.mark.parametrize("name", CASES)
def test_the_suggested_statement_checks(name, tmp_path, capsys):
    source = (GOLDEN / "bad" / f"{name}.gen").read_text()
    first = (GOLDEN / "bad" / f"{name}.err").read_text().splitlines()[0]
    line = int(first.split(":")[1])
    fix = re.search(r"'([^']*)'( here)?$", first).group(1)
    lines = source.split("\n")
    bad = lines[line - 1]
    if name == "stan_bounds_after_dims":  # the fix is the type alone
        fix = bad.split(":")[0].strip() + ": " + fix
    lines[line - 1] = "  " + fix
    path = tmp_path / f"{name}.gen"
    path.write_text("\n".join(lines))
    assert main(["check", str(path)]) == 0, capsys.readouterr().err
