"""Time one projection + back-projection pair: Kaiser–Bessel gridding next to the NUFFT projector.

Usage: ``python benchmarks/bench_gridding.py [--sizes 64 128] [--images 71] [--eps 1e-6 1e-4]``.
Runs numpy (gridding and finufft) and, when cupy sees a GPU, cupy (gridding, and cufinufft when it
is installed). Prints seconds per pair (median of the repeats after a warm-up), the kernel width
and the relative L2 difference of the gridding projection to the NUFFT projection.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

from nanorecon.backend import asnumpy, cupy_available, get_array_module
from nanorecon.geometry import tilt_series_rotations
from nanorecon.refine import FourierSliceProjector


def _synchronize(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def _time_pair(projector, volume, repeats: int) -> tuple[float, np.ndarray]:
    xp = get_array_module(volume)
    images = projector.forward(volume)
    projector.adjoint(images)  # warm-up: FFT plans, kernels, memory pools
    _synchronize(xp)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        images = projector.forward(volume)
        projector.adjoint(images)
        _synchronize(xp)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), asnumpy(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--images", type=int, default=71)
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-6, 1e-4])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    devices = ["cpu"] + (["gpu"] if cupy_available() else [])
    print(f"float32, {args.images} orientations (tilts -70..70°), shifts, devices {devices}")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        rotations = tilt_series_rotations(np.linspace(-70, 70, args.images))
        shifts_A = rng.uniform(-2, 2, (args.images, 2))
        host_volume = rng.random((size,) * 3, dtype=np.float32)
        for device in devices:
            xp = get_array_module(device)
            volume = xp.asarray(host_volume)
            nufft_available = device == "cpu" or importlib.util.find_spec("cufinufft") is not None
            reference = None
            if nufft_available:
                nufft = FourierSliceProjector(rotations, size, shifts_A=shifts_A, device=device)
                seconds, reference = _time_pair(nufft, volume, args.repeats)
                print(
                    f"{size:4d}^3 {device} {nufft.library:10s} eps 1e-6     : "
                    f"{seconds:8.3f} s per pair",
                    flush=True,
                )
            for eps in args.eps:
                gridding = FourierSliceProjector(
                    rotations, size, shifts_A=shifts_A, device=device, eps=eps, method="gridding"
                )
                seconds, images = _time_pair(gridding, volume, args.repeats)
                line = (
                    f"{size:4d}^3 {device} gridding   eps {eps:.0e} W={gridding._forward.width}: "
                    f"{seconds:8.3f} s per pair"
                )
                if reference is not None:
                    difference = np.linalg.norm(images - reference) / np.linalg.norm(reference)
                    line += f", relative L2 to {nufft.library} {difference:.1e}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
