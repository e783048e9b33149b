"""The README's commands stand alone, CI runs the very test command it shows, and the docs link the error table."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- ci: test command -->"


def readme_test_command() -> str:
    """The code block after the marker, as .ci/run reads it."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(MARKER)
    assert lines[start + 1].startswith("```")
    end = next(i for i in range(start + 2, len(lines)) if lines[i].startswith("```"))
    return "\n".join(lines[start + 2 : end])


def test_the_test_command_makes_its_own_venv():
    """Pasted into a fresh shell it works: no venv or package assumed to be there already."""
    command = readme_test_command()
    steps = [step.strip() for step in command.split("&&")]
    assert steps[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"]
    assert "pip install torch==2.13.0" in steps and 'pip install -e ".[testing]"' in steps
    assert steps[-1].endswith("python -m pytest tests")


def test_the_system_packages_step_is_shown_and_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "sudo .ci/system-packages" in readme
    script = (ROOT / ".ci" / "system-packages").read_text()
    assert "xvfb" in script and "libgl1" in script
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".ci/system-packages" in ci and MARKER in ci and "pytest" not in ci  # its command is the README's


def test_ci_reads_exactly_the_readme_command():
    """The awk program of .ci/run, run here on the README, gives the block the README shows."""
    ci = (ROOT / ".ci" / "run").read_text()
    program = ci.split("$(awk '", 1)[1].split("' README.md)", 1)[0]
    out = subprocess.run(["awk", program, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == readme_test_command()


def test_the_error_table_is_linked():
    assert (ROOT / "docs" / "errors.md").is_file()
    assert "(docs/errors.md)" in (ROOT / "README.md").read_text()
    for page in ("usage.md", "api.md"):
        assert "(errors.md)" in (ROOT / "docs" / page).read_text(), page
