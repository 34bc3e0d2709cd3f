"""The README's commands are the ones CI and users run."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "pytest" in ci_command and "ruff check" in ci_command
    assert ci_command in (REPO / "README.md").read_text()


def test_readme_demo_command_uses_a_profile_that_exists():
    readme = (REPO / "README.md").read_text()
    demo = next(
        line for line in readme.splitlines() if "snakemake --profile" in line and "pip" in line
    )
    profile = demo.split("--profile", 1)[1].split()[0]
    assert (REPO / profile / "config.yaml").is_file()
