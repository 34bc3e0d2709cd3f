"""Map a per-particle function over particles on a dask cluster.

Three ways to get workers, one function for all of them:

* ``"gpu"`` — a ``dask_cuda.LocalCUDACluster``, one worker per visible GPU (``pip install nanorecon[gpu]``);
* ``"cpu"`` — a ``distributed.LocalCluster`` of processes on this machine;
* ``scheduler_address`` — an existing scheduler, e.g. one started by dask-jobqueue across cluster nodes.

``"auto"`` picks ``"gpu"`` when cupy sees a CUDA device and dask-cuda is installed, else ``"cpu"``.
The per-particle function must be importable by the workers (a module-level function) and must write its own
outputs atomically, so that an interrupted run keeps every finished particle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from nanorecon.backend import cupy_available

log = logging.getLogger(__name__)

#: the package's loggers, whose records the workers send to the client's log
PACKAGE_LOGGER = "nanorecon"
#: the particle whose task the current worker thread runs (it tags the package's log records)
_running = threading.local()
_factory_lock = threading.Lock()
_factory_installed = False

ClusterKind = Literal["auto", "cpu", "gpu"]


@dataclass(frozen=True)
class ParticleResult:
    """Outcome of one particle's task: its value, or the error that stopped it."""

    key: str
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def gpu_cluster_available() -> bool:
    """True when a CUDA device is visible to cupy and dask-cuda is importable."""
    if not cupy_available():
        return False
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_cluster_kind(kind: ClusterKind) -> Literal["cpu", "gpu"]:
    """Turn ``"auto"`` into ``"gpu"`` or ``"cpu"``; check that ``"gpu"`` can work here."""
    if kind == "auto":
        return "gpu" if gpu_cluster_available() else "cpu"
    if kind == "gpu" and not gpu_cluster_available():
        raise RuntimeError(
            "cluster 'gpu' needs a visible CUDA device, cupy and dask-cuda: "
            "pip install 'nanorecon[gpu]', or choose cluster 'cpu'"
        )
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"cluster must be 'auto', 'cpu' or 'gpu', not {kind!r}")
    return kind


@contextlib.contextmanager
def dask_client(
    *,
    kind: ClusterKind = "auto",
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
) -> Iterator[Any]:
    """A ``distributed.Client`` on the chosen cluster, closed (with its local cluster) on exit.

    Parameters
    ----------
    kind : {"auto", "cpu", "gpu"}, optional
        Local cluster type; ignored when ``scheduler_address`` is given.
    scheduler_address : str, optional
        Address of a running scheduler (``tcp://host:8786``); its workers are used as they are.
    n_workers : int, optional
        Local workers. Default: one per GPU for ``"gpu"``; for ``"cpu"``, the CPU count divided by
        ``threads_per_worker``.
    threads_per_worker : int, optional
        Threads of each local CPU worker (numpy/FFT threads run inside a task as well).
    """
    from distributed import Client

    if scheduler_address:
        log.info("connecting to dask scheduler %s", scheduler_address)
        with Client(scheduler_address) as client:
            yield client
        return

    resolved = resolve_cluster_kind(kind)
    if resolved == "gpu":
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(n_workers=n_workers)
    else:
        from distributed import LocalCluster

        workers = n_workers or max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
        )
    log.info("started local %s dask cluster with %d worker(s)", resolved, len(cluster.workers))
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _tag_with_particle(
    factory: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    """A log-record factory that prefixes the package's messages with the running particle."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        key = getattr(_running, "key", None)
        if (
            key is not None
            and (record.name + ".").startswith(PACKAGE_LOGGER + ".")
            and isinstance(record.msg, str)
        ):
            record.msg = f"{key}: {record.msg}"
        return record

    return make


def run_logged(function: Callable[..., Any], key: str, level: int, *args: Any) -> Any:
    """``function(*args)`` on a worker: the package's loggers pass `level` and above, and their
    messages start with `key` (for :func:`map_particles`, which forwards them to the client)."""
    global _factory_installed
    with _factory_lock:
        if not _factory_installed:
            logging.setLogRecordFactory(_tag_with_particle(logging.getLogRecordFactory()))
            _factory_installed = True
    package = logging.getLogger(PACKAGE_LOGGER)
    if package.getEffectiveLevel() > level:
        package.setLevel(level)
    _running.key = key
    try:
        return function(*args)
    finally:
        _running.key = None


def map_particles(
    function: Callable[..., Any],
    keys: Sequence[str],
    arguments: Sequence[tuple],
    *,
    client: Any,
    progress: bool = True,
    log_level: int = logging.INFO,
) -> list[ParticleResult]:
    """Run ``function(*arguments[i])`` for every particle as one dask task each.

    A failing particle does not stop the others: its error is returned in its :class:`ParticleResult`.
    The package's log records on the workers (``nanorecon.*``, `log_level` and above) reach the
    client's log, each message prefixed with its particle, so that a long task shows its progress
    in the rule's log.

    Parameters
    ----------
    function : callable
        Module-level per-particle function.
    keys : sequence of str
        Particle ids, used as task names and in messages.
    arguments : sequence of tuple
        Positional arguments of each call, same order as `keys`.
    client : distributed.Client
        From :func:`dask_client`.
    progress : bool, optional
        Show a progress bar on stderr.
    log_level : int, optional
        Lowest level of the workers' records that are forwarded (default ``logging.INFO``).

    Returns
    -------
    list of ParticleResult
        In the order of `keys`.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    if len(keys) != len(arguments):
        raise ValueError(f"got {len(keys)} keys but {len(arguments)} argument tuples")
    name = getattr(function, "__name__", "task")
    # a worker in this process logs through this process's handlers already (forwarding its
    # records would hand them back to the forwarding handler, without end)
    if os.getpid() not in client.run(os.getpid).values():
        client.forward_logging(PACKAGE_LOGGER, level=log_level)
    futures = {
        client.submit(
            run_logged, function, key, log_level, *args, key=f"{name}-{key}", pure=False
        ): key
        for key, args in zip(keys, arguments, strict=True)
    }
    results: dict[str, ParticleResult] = {}
    with tqdm(total=len(futures), desc=name, unit="particle", disable=not progress) as bar:
        for future in as_completed(futures):
            key = futures[future]
            if future.status == "error":
                error = future.exception()
                log.error("particle %s failed: %s: %s", key, type(error).__name__, error)
                results[key] = ParticleResult(key, error=f"{type(error).__name__}: {error}")
            else:
                results[key] = ParticleResult(key, value=future.result())
            bar.update()
    return [results[key] for key in keys]
