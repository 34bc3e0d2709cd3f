"""One per-particle function runs the same on a local CPU cluster and on an existing scheduler.

Workers import task functions by reference, so the tasks here are library functions (``math.sqrt``,
``numpy.linalg.norm``) rather than functions of this test module, which the workers cannot import.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nanorecon.parallel import (
    dask_client,
    gpu_cluster_available,
    map_particles,
    resolve_cluster_kind,
)


@pytest.fixture(scope="module")
def cpu_client():
    with dask_client(kind="cpu", n_workers=2, threads_per_worker=1) as client:
        yield client


def test_map_particles_returns_results_in_key_order(cpu_client):
    rng = np.random.default_rng(0)
    keys = [f"p{i:03d}" for i in range(6)]
    arrays = [rng.normal(size=(8 + i, 3)) for i in range(6)]
    results = map_particles(
        np.linalg.norm, keys, [(a,) for a in arrays], client=cpu_client, progress=False
    )
    assert [r.key for r in results] == keys
    assert all(r.ok for r in results)
    assert [r.value for r in results] == pytest.approx([np.linalg.norm(a) for a in arrays])


def test_a_failing_particle_does_not_stop_the_others(cpu_client):
    results = map_particles(
        math.sqrt,
        ["good", "bad", "also-good"],
        [(4.0,), (-1.0,), (9.0,)],
        client=cpu_client,
        progress=False,
    )
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].value == 2.0 and results[2].value == 3.0
    assert results[1].error == "ValueError: math domain error"


def test_existing_scheduler_address_is_used():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with dask_client(scheduler_address=cluster.scheduler_address) as client:
            assert client.scheduler.address == cluster.scheduler_address
            (result,) = map_particles(math.sqrt, ["x"], [(16.0,)], client=client, progress=False)
    assert result.value == 4.0


def test_keys_and_arguments_must_pair_up(cpu_client):
    with pytest.raises(ValueError, match="2 keys but 1 argument tuples"):
        map_particles(math.sqrt, ["a", "b"], [(1.0,)], client=cpu_client)


def test_cluster_kind_resolution():
    assert resolve_cluster_kind("cpu") == "cpu"
    assert resolve_cluster_kind("auto") == ("gpu" if gpu_cluster_available() else "cpu")
    if not gpu_cluster_available():
        with pytest.raises(RuntimeError, match=r"pip install 'nanorecon\[gpu\]'"):
            resolve_cluster_kind("gpu")
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'gpu'"):
        resolve_cluster_kind("tpu")
