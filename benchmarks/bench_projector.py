"""Time one projection + back-projection pair (one reconstruction iteration) of the refine back end.

Usage: ``python benchmarks/bench_projector.py [--sizes 64 128 256] [--images 71] [--device cpu]``.
Prints seconds per pair, the plan set-up time, the peak memory and the NUFFT library and threads.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np

from nanorecon.backend import asnumpy, get_array_module
from nanorecon.geometry import tilt_series_rotations
from nanorecon.refine import FourierSliceProjector


def _synchronize(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def bench(size: int, n_images: int, device: str, repeats: int, n_threads: int | None) -> dict:
    xp = get_array_module(device)
    rotations = tilt_series_rotations(np.linspace(-70, 70, n_images))
    rng = np.random.default_rng(0)
    volume = xp.asarray(rng.random((size,) * 3, dtype=np.float32))
    shifts_A = rng.uniform(-2, 2, (n_images, 2))
    tracemalloc.start()
    start = time.perf_counter()
    projector = FourierSliceProjector(
        rotations, size, shifts_A=shifts_A, device=device, n_threads=n_threads
    )
    _synchronize(xp)
    setup_s = time.perf_counter() - start
    images = projector.adjoint(projector.forward(volume))  # warm-up (FFT plans, caches)
    _synchronize(xp)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        images = projector.forward(volume)
        volume_back = projector.adjoint(images)
        _synchronize(xp)
        times.append(time.perf_counter() - start)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    asnumpy(volume_back[:1, :1, :1])
    row = {
        "size": size,
        "n_images": n_images,
        "setup_s": setup_s,
        "pair_s": float(np.median(times)),
        "python_peak_MiB": peak / 2**20,
        "rss_peak_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if xp is not np:
        row["gpu_pool_MiB"] = xp.get_default_memory_pool().total_bytes() / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--images", type=int, default=71)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="finufft threads (all cores)")
    args = parser.parse_args()
    library = FourierSliceProjector(tilt_series_rotations([0.0]), 8, device=args.device).library
    version = __import__(library).__version__
    threads = args.threads or os.cpu_count()
    print(f"device {args.device}; NUFFT {library} {version}; FFT numpy/cupy.fft; ", end="")
    print(f"NUFFT threads {threads if args.device == 'cpu' else 'GPU'}; float32, eps 1e-6")
    for size in args.sizes:
        row = bench(size, args.images, args.device, args.repeats, args.threads)
        print(
            f"{row['size']:4d}^3 x {row['n_images']} images: {row['pair_s']:.3f} s per "
            f"project+backproject pair, set-up {row['setup_s']:.2f} s, python peak "
            f"{row['python_peak_MiB']:.0f} MiB, RSS peak {row['rss_peak_MiB']:.0f} MiB"
            + (f", GPU pool {row['gpu_pool_MiB']:.0f} MiB" if "gpu_pool_MiB" in row else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
