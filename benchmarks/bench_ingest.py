"""Benchmark ``nanorecon ingest`` on a large synthetic MRC movie: wall time, throughput, peak RSS.

Usage: ``python benchmarks/bench_ingest.py [--size-gb 4] [--workdir DIR] [--keep]``

Writes an int16 MRC movie of 1024×1024 frames (block by block through ``mrcfile.new_mmap``, so
this script stays small), a one-row sample sheet, runs ``nanorecon ingest`` in a child process and
reports the child's peak resident memory. Exits 1 if the peak RSS reaches 1 GiB.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np

FRAME = 1024
RSS_LIMIT_BYTES = 2**30
_INGEST_ONLY = (
    "import sys, nanorecon.cli as cli; cli.VERBS = {'ingest': '_ingest'}; "
    "sys.exit(cli.main(sys.argv[1:]))"
)


def write_movie(path: Path, size_gb: float, *, block: int = 16) -> int:
    """Write an int16 MRC movie of about ``size_gb`` GB; return the number of frames.

    ``mrcfile.new_mmap`` writes the header and sizes the file without touching the data; the
    frames are then written block by block with positioned writes. Writing through the map would
    leave every dirty page in this process's resident set, and a child inherits the parent's peak
    RSS at exec, which would then be charged to the ingest.
    """
    n = max(2, int(size_gb * 1e9 // (FRAME * FRAME * 2)))
    with mrcfile.new_mmap(path, shape=(n, FRAME, FRAME), mrc_mode=1, overwrite=True) as mrc:
        mrc.voxel_size = 0.36
        offset = mrc.header.nbytes + mrc.extended_header.nbytes
    rng = np.random.default_rng(0)
    fd = os.open(path, os.O_WRONLY)
    try:
        for start in range(0, n, block):
            stop = min(n, start + block)
            # low counts with a block-wise mean: compresses like real low-dose frames
            high = 6 + 2 * ((start // block) % 5)
            frames = rng.integers(0, high, size=(stop - start, FRAME, FRAME), dtype=np.int16)
            os.pwrite(fd, frames.astype("<i2", copy=False).tobytes(), offset + start * FRAME**2 * 2)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # later reads come from disk
    finally:
        os.close(fd)
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=4.0, help="movie size [GB]")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--chunk-mb", type=float, default=32.0, help="zarr chunk size [MiB]")
    parser.add_argument("--keep", action="store_true", help="keep the movie and the zarr store")
    args = parser.parse_args()

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.workdir))
    try:
        movie = workdir / "movie.mrc"
        t0 = time.perf_counter()
        n = write_movie(movie, args.size_gb)
        size = movie.stat().st_size
        print(
            f"wrote {movie}: {n} frames of {FRAME}×{FRAME} int16, {size / 1e9:.2f} GB "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        sheet = workdir / "samples.tsv"
        sheet.write_text(
            "dataset\tmodality\tpath\tpixel_size_A\tvoltage_kV\telements\tframe_rate_hz\n"
            "bench\tbrownian\tmovie.mrc\t\t300\tPt\t400\n"
        )
        out = workdir / "results" / "bench" / "raw.zarr"
        cmd = [sys.executable, "-m", "nanorecon"]
        if importlib.util.find_spec("nanorecon.cli._simulate") is None:
            # the dispatcher imports every verb; run the ingest verb alone while one is missing
            cmd = [sys.executable, "-c", _INGEST_ONLY]
        cmd += ["ingest", str(sheet), "bench", str(out), "--no-progress"]
        cmd += ["--chunk-mb", str(args.chunk_mb)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False)
        wall = time.perf_counter() - t0
        self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        if proc.returncode != 0:
            print(f"ingest failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
        stored = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        print(f"ingest wall time   {wall:.1f} s")
        print(f"throughput         {size / 1e6 / wall:.0f} MB/s (source bytes)")
        print(
            f"output             {stored / 1e9:.2f} GB float32 zarr "
            f"({n * FRAME * FRAME * 4 / max(stored, 1):.1f}× compression)"
        )
        print(f"benchmark peak RSS {self_rss / 2**20:.0f} MiB (a child inherits it at exec)")
        print(
            f"child peak RSS     {peak_rss / 2**20:.0f} MiB (limit {RSS_LIMIT_BYTES / 2**20:.0f})"
        )
        if peak_rss >= RSS_LIMIT_BYTES:
            print("FAIL: peak RSS of the ingest reached 1 GiB", file=sys.stderr)
            return 1
        return 0
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
