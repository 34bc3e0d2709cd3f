"""Helpers to run the Snakemake workflow in a scratch copy of the repository's workflow files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "envs"]


def copy_workflow(root: Path) -> Path:
    """Copy the workflow files into `root`, as a user's clone holds them."""
    root.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            shutil.copy2(source, root / name)
    return root


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh working directory holding the workflow."""
    return copy_workflow(tmp_path / "wf")


def _run_snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SNAKEMAKE_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def run_snakemake():
    """``run_snakemake(workdir, *args)``: snakemake in `workdir`, `nanorecon` on PATH, output in stdout."""
    return _run_snakemake


@pytest.fixture(scope="session")
def ci_workflow(tmp_path_factory, run_snakemake) -> tuple[Path, subprocess.CompletedProcess]:
    """One run of `snakemake --profile profiles/ci` (default target), shared by the tests reading it."""
    root = copy_workflow(tmp_path_factory.mktemp("ci") / "wf")
    return root, run_snakemake(root, "--profile", "profiles/ci")
