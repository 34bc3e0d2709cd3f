"""nanorecon's reconstruction against GENFIRE 1.1.11 on identical tilt series (CPU).

Usage: ``python benchmarks/bench_reconstruct.py [--sizes 128 256] [--images 71] [--iterations 20]``.

A simulated Pt particle (``nanorecon.simulate.make_particle``) is rendered as the truth volume
(voxel-integrated Gaussians) and projected analytically (pixel-integrated Gaussians, neither
method's projector) at tilts ±70° about the map y axis. Both programs reconstruct the same images
with the same angles, box and number of iterations, each in a fresh process (so the peak resident
memory is its own). Printed per size: seconds per iteration and set-up time of both, their ratio,
peak memory, and the FSC of each map against the truth and between the two maps.

GENFIRE (``pip install genfire==1.1.11 --no-deps``; needs matplotlib and Pillow) imports its
PyQt5 GUI and selects the Qt5Agg matplotlib backend on import; the shims in
:func:`_import_genfire` skip both. Its geometry: the volume array is indexed ``[x, y, z]``, a
projection ``[x, y]``, and its ZYZ Euler matrix equals RELION's, so nanorecon's ``(rot, tilt,
psi)`` are GENFIRE's ``(phi, theta, psi)`` with the arrays transposed (checked by the printed
correlation of the two maps). GENFIRE pads by its oversampling ratio (default 3); at 256³ a
768³ complex128 grid and its Hermitian-symmetrised copies do not fit in 23 GB, so sizes above
128 use ratio 2 (``--genfire-oversampling`` overrides).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import platform
import resource
import sys
import time
import types
import warnings

import numpy as np


def _import_genfire():
    """Import GENFIRE's reconstruction module without its Qt GUI and Qt matplotlib backend."""
    import matplotlib

    matplotlib.use("Agg")
    sys.modules.setdefault("genfire.gui", types.ModuleType("genfire.gui"))
    use, matplotlib.use = matplotlib.use, lambda *args, **kwargs: None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "No pyFFTW installation found ..."
            import genfire.reconstruct
    finally:
        matplotlib.use = use
    return genfire.reconstruct


def _peak_rss_MiB() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_nanorecon(images, matrices, n_iterations, n_threads, step):
    from nanorecon.refine import reconstruct

    stamps = []
    start = time.perf_counter()
    result = reconstruct(
        images,
        matrices,
        n_iterations=n_iterations,
        n_threads=n_threads,
        step=step,
        callback=lambda i, error: stamps.append(time.perf_counter()),
    )
    total = time.perf_counter() - start
    per_iteration = float(np.median(np.diff(stamps))) if len(stamps) > 1 else total
    return {
        "volume": result.volume,
        "total_s": total,
        "iteration_s": per_iteration,
        "setup_s": stamps[0] - start - per_iteration,
        "peak_MiB": _peak_rss_MiB(),
        "threads": _thread_report(),
    }


def _run_genfire(images, euler_deg, n_iterations, oversampling):
    gf = _import_genfire()
    timings = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = function(*args, **kwargs)
            timings[name] = time.perf_counter() - start
            return out

        return wrapper

    gf.fillInFourierGrid = timed("gridding_s", gf.fillInFourierGrid)
    gf.reconstruct = timed("iterations_s", gf.reconstruct)
    reconstructor = gf.GenfireReconstructor(
        projections=np.ascontiguousarray(images.transpose(2, 1, 0), dtype=np.float64),
        eulerAngles=euler_deg,
        resolutionExtensionSuppressionState=2,  # every measured point enforced from the start
        numIterations=n_iterations,
        oversamplingRatio=oversampling,
        calculateRfree=False,  # keep all data, as nanorecon does
        verbose=False,
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        results = reconstructor.reconstruct()
    total = time.perf_counter() - start
    iteration_s = timings["iterations_s"] / n_iterations
    return {
        "volume": np.ascontiguousarray(results["reconstruction"].transpose(2, 1, 0)),
        "total_s": total,
        "iteration_s": iteration_s,
        "setup_s": total - timings["iterations_s"],
        "gridding_s": timings["gridding_s"],
        "peak_MiB": _peak_rss_MiB(),
        "threads": _thread_report(),
    }


def _in_fresh_process(function, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def _thread_report() -> str:
    from threadpoolctl import threadpool_info

    pools = [
        f"{p['internal_api']} {p.get('version')} ({p['num_threads']} threads)"
        for p in threadpool_info()
    ]
    return "; ".join(pools) or "no BLAS/OpenMP pool loaded"


def _particle(size: int, voxel_size_A: float, n_images: int):
    from nanorecon.geometry import tilt_series_rotations
    from nanorecon.simulate import atoms_to_volume, make_particle, project_gaussians

    sigma_A = 0.5
    diameter_nm = 0.4 * size * voxel_size_A / 10
    particle = make_particle(diameter_nm=diameter_nm, rng=np.random.default_rng(size))
    positions = particle.positions_A
    weights = np.ones(len(positions))
    truth = atoms_to_volume(positions, weights, (size,) * 3, voxel_size_A, sigma_A)
    rotations = tilt_series_rotations(np.linspace(-70, 70, n_images))
    images = np.stack(
        [
            project_gaussians(
                rotations[k].apply(positions),
                weights,
                shape=(size, size),
                pixel_size_A=voxel_size_A,
                sigma_A=sigma_A,
                dtype=np.float32,
            )
            for k in range(n_images)
        ]
    )
    return truth.astype(np.float32), images, rotations, len(positions), diameter_nm


def _quality(volume, truth, voxel_size_A):
    from nanorecon.refine import fsc, resolution_at

    table = fsc(volume, truth, voxel_size_A)
    shells = table["spatial_frequency_1_per_A"] > 0
    error = np.linalg.norm(volume - truth) / np.linalg.norm(truth)
    return {
        "fsc_mean": float(table["fsc"][shells].mean()),
        "fsc_half_nyquist": float(table["fsc"].iloc[len(table) // 2]),
        "resolution_A": resolution_at(table, 0.5),
        "error": float(error),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--images", type=int, default=71)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--voxel-size", type=float, default=0.35, help="[Å]")
    parser.add_argument("--threads", type=int, default=None, help="finufft threads (all cores)")
    parser.add_argument("--genfire-oversampling", type=int, default=None)
    parser.add_argument("--step", type=float, default=1.9, help="nanorecon step (of 2 / ‖PᵀWP‖)")
    args = parser.parse_args()

    import finufft

    from nanorecon.geometry import euler_from_rotations

    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(
        f"numpy {np.__version__} (FFT: pocketfft, single-threaded; BLAS: {blas['name']} "
        f"{blas['version']}), finufft {finufft.__version__} (OpenMP, "
        f"{args.threads or os.cpu_count()} threads), nanorecon float32; GENFIRE 1.1.11 float64 "
        "with numpy.fft (no pyFFTW)"
    )
    for size in args.sizes:
        oversampling = args.genfire_oversampling or (3 if size <= 128 else 2)
        truth, images, rotations, n_atoms, diameter_nm = _particle(
            size, args.voxel_size, args.images
        )
        print(
            f"\n{size}^3, {args.images} images (±70° tilt), {args.iterations} iterations, "
            f"Pt particle {diameter_nm:.1f} nm / {n_atoms} atoms, voxel {args.voxel_size} Å, "
            f"GENFIRE oversampling {oversampling}, nanorecon step {args.step}",
            flush=True,
        )
        matrices = rotations.as_matrix()
        ours = _in_fresh_process(
            _run_nanorecon, images, matrices, args.iterations, args.threads, args.step
        )
        with warnings.catch_warnings():  # zero tilt: gimbal lock, psi = 0 is exact
            warnings.simplefilter("ignore", UserWarning)
            euler_deg = euler_from_rotations(rotations)
        print(f"  nanorecon threads: {ours['threads']}", flush=True)
        theirs = _in_fresh_process(_run_genfire, images, euler_deg, args.iterations, oversampling)
        print(f"  GENFIRE threads:   {theirs['threads']}")
        for name, run in (("nanorecon", ours), ("GENFIRE", theirs)):
            q = _quality(run["volume"], truth, args.voxel_size)
            extra = f" (gridding {run['gridding_s']:.1f} s)" if "gridding_s" in run else ""
            print(
                f"  {name:9s}: {run['iteration_s']:7.3f} s/iteration, set-up {run['setup_s']:6.1f} s"
                f"{extra}, total {run['total_s']:6.1f} s, peak RSS {run['peak_MiB']:7.0f} MiB | "
                f"FSC vs truth: mean {q['fsc_mean']:.3f}, at Nyquist/2 {q['fsc_half_nyquist']:.3f}, "
                f"FSC=0.5 at {q['resolution_A']:.2f} Å, map error {q['error']:.3f}"
            )
        correlation = np.corrcoef(ours["volume"].ravel(), theirs["volume"].ravel())[0, 1]
        print(
            f"  ratio GENFIRE/nanorecon: {theirs['iteration_s'] / ours['iteration_s']:.1f}x per "
            f"iteration, {theirs['total_s'] / ours['total_s']:.1f}x total; correlation of the two "
            f"maps {correlation:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
