"""Every code block in docs/ and the README runs: ```python blocks are executed (in order, one namespace per
page), ```bash lines starting with `gendsl` run through the CLI and must exit 0, ```gen blocks
must parse and check. Budgets are capped by tests/smoke.py. The language reference cannot drift
from the grammar and the registries."""

import re
import shlex
from pathlib import Path

import pytest
from smoke import small_budgets

import gendsl
from gendsl.cli import main
from gendsl.docgen import render_language_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(path: Path):
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text())]


def test_language_reference_matches_grammar_and_registries():
    docs = ROOT / "docs"
    assert (docs / "language.md").read_text() == render_language_reference((docs / "language.md.in").read_text()), \
        "docs/language.md is stale: run `python -m gendsl.docgen`"
    assert (ROOT / "grammar" / "gen.lark").read_text() in (docs / "language.md").read_text()


@pytest.mark.parametrize("page", [p for p in DOCS if any(k in ("python", "bash", "gen") for k, _ in blocks(p))],
                         ids=lambda p: p.name)
def test_every_code_block_runs(page, tmp_path, monkeypatch):
    small_budgets(monkeypatch)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for kind, code in blocks(page):
        if kind == "python":
            exec(compile(code, f"{page.name}:python", "exec"), namespace)  # noqa: S102 - our own docs
        elif kind == "gen":
            gendsl.parse_all(code, page.name)
        elif kind == "bash":
            for line in code.replace("\\\n", " ").splitlines():
                line = line.strip()
                if line.startswith("gendsl "):
                    assert main(shlex.split(line)[1:]) == 0, f"{page.name}: {line}"


def test_ci_finds_the_readme_commands():
    """.ci/run runs the first pytest line of the README's opening block: it must be there, after
    the install-and-run line, and both must install the project from its own files."""
    import subprocess

    head = (ROOT / "README.md").read_text().splitlines()[:12]
    test_line = subprocess.run(["bash", "-c", "head -n 12 README.md | grep -m1 pytest"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    first = next(line for line in head if line.startswith("python -m venv"))
    assert "pip install -e ." in first and "gendsl fit" in first and "gendsl sample" in first
    assert test_line != first and 'pip install -e ".[test]"' in test_line and "pytest tests" in test_line
