"""Brownian per-particle refinement of the four-particle demo movie with 1 and 2 dask workers.

Usage: ``python benchmarks/bench_brownian.py [--frames 300] [--abinitio crystal] [--starts 3]
[--rounds 4] [--iterations 20] [--search-iterations 12] [--grid 5000] [--device cpu]
[--threads-per-worker 1] [--out DIR]``.

Simulates the ``demo_brownian`` dataset of ``config/config.yaml`` (four Pt particles of 2.2–2.9 nm;
``--frames`` shortens the movie), ingests, tracks and extracts it with the ``nanorecon`` verbs,
then runs ``nanorecon refine-particles --truth`` three times on the same stacks (``--force``): with
the rotational-diffusion prior on 1 and on 2 local dask workers, and without the prior on 2
workers. The workers are local CPU processes (``--threads-per-worker`` threads each); with
``--device gpu`` each computes on the GPU (cupy), which they share. Printed: the wall time of
each run, the speed-up of 2 workers over 1, the peak resident memory of each worker process, and
per particle the matched true particle, the per-frame orientation error after global alignment
(median and 90th percentile, hand allowed), the gold-standard FSC resolution and the estimated
rotational diffusion constant.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from nanorecon.cli import main as nanorecon

REPO = Path(__file__).resolve().parents[1]


def _check(status: int, what: str) -> None:
    if status != 0:
        raise SystemExit(f"{what} failed with status {status}")


def prepare(out: Path, n_frames: int | None) -> tuple[Path, Path]:
    """Simulate, ingest, track and extract the demo movie; returns (dataset folder, truth)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    spec = dict(config["simulate"]["demo_brownian"]["spec"])
    if n_frames is not None:
        spec["n_frames"] = n_frames
    sim = out / "sim"
    _check(
        nanorecon(
            ["simulate", "brownian", str(sim), "--dataset", "demo_brownian"]
            + ["--spec-json", json.dumps(spec)]
        ),
        "simulate",
    )
    dataset = out / "demo_brownian"
    raw = dataset / "raw.zarr"
    _check(nanorecon(["ingest", str(sim / "samples.tsv"), "demo_brownian", str(raw)]), "ingest")
    _check(nanorecon(["track", str(raw), str(dataset), "--no-progress"]), "track")
    _check(
        nanorecon(["extract", str(raw), str(dataset / "tracks.parquet"), str(dataset)]), "extract"
    )
    return dataset, sim / "truth"


def refine(
    dataset: Path, truth: Path, workers: int, options: list[str]
) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    _check(
        nanorecon(
            ["refine-particles", str(dataset), "--truth", str(truth), "--force", "--no-progress"]
            + ["--cluster", "cpu", "--workers", str(workers), *options]
        ),
        "refine-particles",
    )
    seconds = time.perf_counter() - start
    return seconds, pd.read_csv(dataset / "refinement.tsv", sep="\t")


def report(name: str, seconds: float, table: pd.DataFrame) -> None:
    print(f"\n== {name}: wall time {seconds:.1f} s")
    done = table[table["worker"].notna()]
    memory = done.groupby("worker")["worker_peak_rss_MB"].max()
    for worker, megabytes in memory.items():
        print(f"   worker {worker}: peak RSS {megabytes:.0f} MB")
    columns = [
        "particle",
        "status",
        "n_used",
        "true_particle",
        "orientation_error_median_deg",
        "orientation_error_p90_deg",
        "resolution_A",
        "D_r_rad2_per_s",
        "seconds",
    ]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table[columns].round(2).to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, help="movie length (default: the demo's 300)")
    parser.add_argument("--abinitio", choices=["crystal", "search"], default="crystal")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--search-iterations", type=int, default=12)
    parser.add_argument("--grid", type=int, default=5000)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    options = ["--abinitio", args.abinitio, "--starts", str(args.starts)]
    options += ["--rounds", str(args.rounds)]
    options += ["--iterations", str(args.iterations), "--grid", str(args.grid)]
    options += ["--search-iterations", str(args.search_iterations)]
    options += ["--particle-diameter-A", "30", "--device", args.device]
    options += ["--threads-per-worker", str(args.threads_per_worker)]
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        dataset, truth = prepare(out, args.frames)
        print(pd.read_csv(dataset / "particles.tsv", sep="\t").to_string(index=False))
        one, table_one = refine(dataset, truth, 1, options)
        report("prior on, 1 worker", one, table_one)
        two, table_two = refine(dataset, truth, 2, options)
        report("prior on, 2 workers", two, table_two)
        print(f"\nspeed-up 2 workers / 1 worker: {one / two:.2f}×")
        off, table_off = refine(dataset, truth, 2, [*options, "--no-prior"])
        report("prior off, 2 workers", off, table_off)


if __name__ == "__main__":
    main()
