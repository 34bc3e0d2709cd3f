"""One per-particle function runs the same on a local CPU cluster and on an existing scheduler.

Workers import task functions by reference, so the tasks here are library functions (``math.sqrt``,
``numpy.linalg.norm``) rather than functions of this test module, which the workers cannot import.
"""

from __future__ import annotations

import logging
import math
import time

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


def _wait_for(caplog, text: str, seconds: float = 10.0) -> None:
    """Forwarded records arrive by the scheduler's event stream, just after the results."""
    deadline = time.monotonic() + seconds
    while text not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)


def test_worker_log_records_reach_the_client_log_tagged_with_their_particle(cpu_client, caplog):
    worker_log = logging.getLogger("nanorecon.test_parallel")  # a Logger pickles by name
    with caplog.at_level(logging.INFO):
        (done,) = map_particles(
            worker_log.info, ["p007"], [("FSC 0.143 at %.2f Å",  1.13)], client=cpu_client,
            progress=False,
        )  # fmt: skip
        assert done.ok
        _wait_for(caplog, "p007: FSC 0.143 at 1.13 Å")
        map_particles(
            worker_log.debug, ["p008"], [("every iteration",)], client=cpu_client, progress=False
        )
        map_particles(
            worker_log.info, ["p009"], [("not forwarded",)], client=cpu_client,
            progress=False, log_level=logging.WARNING,
        )  # fmt: skip
        time.sleep(1.0)
    assert "p007: FSC 0.143 at 1.13 Å" in caplog.text
    assert caplog.text.count("FSC 0.143") == 1
    assert "every iteration" not in caplog.text  # below log_level
    assert "not forwarded" not in caplog.text  # below this call's log_level


def test_workers_in_this_process_log_each_record_once(caplog):
    from distributed import Client, LocalCluster

    worker_log = logging.getLogger("nanorecon.test_parallel")
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client, caplog.at_level(logging.INFO):
            map_particles(worker_log.info, ["p003"], [("traced",)], client=client, progress=False)
            _wait_for(caplog, "p003: traced")
            time.sleep(1.0)
    # a worker thread's record reaches this process's handlers directly, and is not forwarded
    assert caplog.text.count("p003: traced") == 1


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
