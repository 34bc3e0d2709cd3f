"""Shared fixtures: the device matrix (numpy always, cupy when a GPU is visible) and workflow copies."""

from __future__ import annotations

import pytest

from nanorecon.backend import cupy_available

DEVICES = [
    "cpu",
    pytest.param(
        "gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="no GPU")]
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Run a kernel test once per array module: "cpu" (numpy) and "gpu" (cupy, skipped without one)."""
    return request.param
