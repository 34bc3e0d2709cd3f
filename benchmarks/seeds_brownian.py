"""Seed reproducibility of a Brownian run: the same stacks refined from several ab initio seeds.

Usage::

    python benchmarks/seeds_brownian.py results/demo_brownian \\
        resources/simulated/demo_brownian/truth --out /tmp/seeds [--seeds 0 10 20 30 40] \\
        [--particles p001 p003] [--device gpu] \\
        [--refine-options "--particle-diameter-A 30 --starts 3"]

For each seed S the particles' extracted stacks (``particles/pNNN/stack.zarr``, linked, not
copied) are refined by ``nanorecon refine-particles --seed S`` into ``OUT/seedS/`` (its K ab
initio starts use the seeds S … S + K − 1, so seeds closer than K apart share starts); every
particle that refines (status ok) is traced by ``nanorecon trace`` and scored by ``nanorecon
validate`` as the workflow does. Printed, and written to ``OUT/seeds.csv`` and
``OUT/seed_pairs.csv``:

* per seed and particle: status, ab initio starts that agree, median orientation error, recall,
  precision, RMS position error, lattice-parameter error, run time, the RMS distance of the
  traced atoms from their fitted ideal lattice and the lattice site score that also counts empty
  sites inside and outliers (both truth-free; with the seed the site score prefers);
* per candidate map that refine-particles scored (``--choose-by lattice``; written to
  ``OUT/candidates.csv``): its truth-free figures beside its atoms' recall, precision, RMS error
  and lattice-parameter error, and which candidate the score and the truth would keep;
* per particle and pair of seeds whose maps were traced (status ok; with ``--trace-failed``
  every map): how their atom models agree (one-to-one matches within 0.8 Å after alignment, as
  a share of the larger model, and the RMS distance of the matches [pm]); and the spread of the
  lattice parameter over seeds.

"The same structure each time" means every seed refines (status ok), the models of every pair
match atom for atom (share near 1, RMS distance near the models' own error) and the lattice
parameters agree to well under the 0.3 % target. Seeds run one after another; a finished seed
(its particles' ``refined.json`` matching) is not recomputed, so an interrupted benchmark
resumes (maps refined again are traced again). On the demo's two cores one seed takes 12–20 min
per pair of particles; on one H100 about 2.5 min per particle.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from nanorecon.lattice import fit_lattice, lattice_site_score
from nanorecon.validate import score_model

#: copied per particle (refinement rewrites its orientations.parquet); the stack is linked
PARTICLE_INPUTS = ("ctf.json", "orientations.parquet")


def prepare_seed(dataset: Path, folder: Path, particles: list[str]) -> None:
    """A dataset folder for one seed: the movie and stacks linked, the frame tables copied."""
    (folder / "particles").mkdir(parents=True, exist_ok=True)
    if not (folder / "raw.zarr").exists():
        (folder / "raw.zarr").symlink_to((dataset / "raw.zarr").resolve())
    table = pd.read_csv(dataset / "particles.tsv", sep="\t", dtype=str, keep_default_na=False)
    table[table.particle.isin(particles)].to_csv(folder / "particles.tsv", sep="\t", index=False)
    for pid in particles:
        source, target = dataset / "particles" / pid, folder / "particles" / pid
        target.mkdir(exist_ok=True)
        if not (target / "stack.zarr").exists():
            (target / "stack.zarr").symlink_to((source / "stack.zarr").resolve())
        for name in PARTICLE_INPUTS:
            if (source / name).exists() and not (target / name).exists():
                shutil.copy2(source / name, target / name)


def run(command: list[str], log: Path) -> None:
    """Run a nanorecon command, its output to `log`; a failure names the log."""
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        sys.exit(f"{shlex.join(command)} failed (exit {done.returncode}); see {log}")


def _stale(output: Path, marker: Path) -> bool:
    """Missing, or older than the refinement that wrote the map (refined.json is written last)."""
    return not output.exists() or output.stat().st_mtime < marker.stat().st_mtime


def trace_and_validate(folder: Path, truth_dir: Path, elements: str) -> pd.Series:
    """Trace one refined particle's map and score it; the validation row."""
    traced, marker = folder / "traced", folder / "refined.json"
    if _stale(traced / "atoms.parquet", marker):
        run(
            ["nanorecon", "trace", str(folder / "map.zarr"), str(traced), "--elements", elements],
            folder / "trace.log",
        )
    out = folder / "validation.csv"
    if _stale(out, traced / "atoms.parquet"):
        run(
            [
                "nanorecon",
                "validate",
                str(traced / "atoms.parquet"),
                str(truth_dir / "atoms.csv"),
                str(out),
                "--matched",
                str(folder / "orientation_validation.csv"),
            ],
            folder / "validate.log",
        )
    return pd.read_csv(out).iloc[0]


def model_agreement(a: pd.DataFrame, b: pd.DataFrame, structure: str) -> tuple[float, float]:
    """Share of one-to-one matched atoms (of the larger model) and their RMS distance [pm]."""
    score = score_model(a, b, structure=None if structure == "none" else structure)
    return score["n_matched"] / max(len(a), len(b)), score["rms_error_pm"]


def lattice_scores_pm(atoms: pd.DataFrame, structure: str) -> dict[str, float]:
    """Truth-free figures of a traced model [pm]: the RMS distance of its atoms from their
    best-fitting ideal lattice, and the lattice site score, which also counts the empty sites
    inside and the atoms the fit leaves out (the score refine-particles ranks maps by)."""
    if structure == "none":
        return {"lattice_fit_rms_pm": float("nan"), "site_score_pm": float("nan")}
    positions = atoms[["x_A", "y_A", "z_A"]].to_numpy(float)
    fit = fit_lattice(positions, structure=structure)
    site = lattice_site_score(positions, fit)
    return {
        "lattice_fit_rms_pm": 100 * fit.rms_residual_A,
        "site_score_pm": 100 * site.score_A,
        "n_empty_sites": site.n_empty,
        "n_outliers": site.n_outliers,
    }


def score_candidates(folder: Path, truth: pd.DataFrame, structure: str) -> pd.DataFrame:
    """Every candidate map refine-particles scored (``candidate_maps.csv``), its traced atoms
    (``candidate_atoms.csv``) scored against the truth: does the truth-free score rank them as
    their true error does? Empty where the particle wrote no candidates."""
    maps, atoms = folder / "candidate_maps.csv", folder / "candidate_atoms.csv"
    if not (maps.exists() and atoms.exists()):
        return pd.DataFrame()
    table, traced = pd.read_csv(maps), pd.read_csv(atoms)
    rows = []
    for candidate, model in traced.groupby("candidate"):
        score = score_model(model, truth, structure=None if structure == "none" else structure)
        rows.append(
            {
                "candidate": candidate,
                "recall": score["recall"],
                "precision": score["precision"],
                "rms_error_pm": score["rms_error_pm"],
                "lattice_error_percent": score.get("lattice_parameter_error_percent"),
            }
        )
    return table.merge(pd.DataFrame(rows), on="candidate", how="left")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="results/{dataset} of a Brownian run")
    parser.add_argument("truth_dir", type=Path, help="simulator truth folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the seeds' runs")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 10, 20, 30, 40],
        help="first ab initio seed of each run; keep them more than --starts apart",
    )
    parser.add_argument("--particles", nargs="*", help="particle ids (default: every ok one)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="local dask workers")
    parser.add_argument(
        "--structure",
        choices=("fcc", "bcc", "sc", "none"),
        default="fcc",
        help="lattice of the truth-free lattice fit, and whose symmetry the seed-to-seed model "
        "alignment tries (default: fcc)",
    )
    parser.add_argument(
        "--trace-failed",
        action="store_true",
        help="also trace and score the maps of particles that fail refine-particles' gates "
        "(the workflow does not trace them)",
    )
    parser.add_argument(
        "--refine-options",
        default="--particle-diameter-A 30 --starts 3",
        help="further refine-particles flags (default: the demo's)",
    )
    args = parser.parse_args()

    extracted = pd.read_csv(args.dataset_dir / "particles.tsv", sep="\t", dtype=str)
    particles = args.particles or sorted(extracted.loc[extracted.status == "ok", "particle"])
    truth_atoms = pd.read_csv(args.truth_dir / "atoms.csv")
    rows, models, candidates = [], {}, []
    for seed in args.seeds:
        folder = args.out / f"seed{seed}"
        prepare_seed(args.dataset_dir, folder, particles)
        print(f"seed {seed}: refining {len(particles)} particle(s) in {folder}", flush=True)
        command = ["nanorecon", "refine-particles", str(folder), "--truth", str(args.truth_dir)]
        command += ["--seed", str(seed), "--device", args.device, "--workers", str(args.workers)]
        command += ["--cluster", args.device, "--no-progress", *shlex.split(args.refine_options)]
        run(command, args.out / f"seed{seed}.log")
        for pid in particles:
            particle_dir = folder / "particles" / pid
            marker = json.loads((particle_dir / "refined.json").read_text())
            row = {
                "seed": seed,
                "particle": pid,
                "status": marker["status"],
                "agreeing_starts": marker["abinitio_agreeing_starts"],
                "orientation_error_median_deg": marker.get("orientation_error_median_deg"),
                "resolution_A": marker["resolution_A"],
                "seconds": marker["seconds"],
            }
            # refine-particles ran with --truth, so its marker names the matched true particle
            truth = truth_atoms[truth_atoms.particle == int(marker["true_particle"])]
            if marker["status"] == "ok" or args.trace_failed:
                elements = ",".join(sorted(truth["element"].unique()))
                score = trace_and_validate(particle_dir, args.truth_dir, elements)
                for key in ("recall", "precision", "rms_error_pm"):
                    row[key] = score[key]
                row["lattice_error_percent"] = score["lattice_parameter_error_percent"]
                row["lattice_parameter_A"] = score["lattice_parameter_A"]
                models[seed, pid] = pd.read_parquet(particle_dir / "traced" / "atoms.parquet")
                row.update(lattice_scores_pm(models[seed, pid], args.structure))
            scored = score_candidates(particle_dir, truth, args.structure)
            candidates.append(scored.assign(seed=seed, particle=pid))
            rows.append(row)
    seeds = pd.DataFrame(rows)
    seeds.to_csv(args.out / "seeds.csv", index=False)
    shown = seeds.assign(status=seeds.status.str.split(":").str[0])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.round(3).to_string(index=False))
    for row in seeds[seeds.status != "ok"].itertuples():
        print(f"seed {row.seed} {row.particle}: {row.status}")
    if "site_score_pm" in seeds:
        for pid, runs in seeds.dropna(subset=["site_score_pm"]).groupby("particle"):
            best = runs.loc[runs.site_score_pm.idxmin()]
            print(
                f"{pid}: the lattice site score prefers seed {best.seed} "
                f"({best.site_score_pm:.1f} pm): recall {best.recall:.1%}, precision "
                f"{best.precision:.1%}, RMS error {best.rms_error_pm:.1f} pm (best of {len(runs)} "
                f"traced: {runs.rms_error_pm.min():.1f} pm)"
            )

    candidates = pd.concat(candidates, ignore_index=True) if candidates else pd.DataFrame()
    if len(candidates):
        candidates.to_csv(args.out / "candidates.csv", index=False)
        shown = ["seed", "particle", "candidate", "start", "variant", "n_atoms", "n_outliers"]
        shown += ["n_empty_sites", "fit_rms_pm", "score_pm", "kept", "recall", "precision"]
        shown += ["rms_error_pm", "lattice_error_percent"]
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(candidates[[c for c in shown if c in candidates]].round(3).to_string(index=False))
        for (seed, pid), runs in candidates.dropna(subset=["score_pm"]).groupby(
            ["seed", "particle"]
        ):
            chosen = runs.loc[runs.score_pm.idxmin()]
            # the truth's choice: most atoms right (F1 of recall and precision), then the RMS
            f1 = 2 * runs.recall * runs.precision / (runs.recall + runs.precision)
            ranked = runs.assign(f1=f1.round(3))
            truest = ranked.sort_values(["f1", "rms_error_pm"], ascending=[False, True]).iloc[0]
            print(
                f"seed {seed} {pid}: the score keeps candidate {chosen.candidate} "
                f"(recall {chosen.recall:.1%}, precision {chosen.precision:.1%}, "
                f"{chosen.rms_error_pm:.1f} pm); the truth would keep {truest.candidate} "
                f"(recall {truest.recall:.1%}, precision {truest.precision:.1%}, "
                f"{truest.rms_error_pm:.1f} pm)"
            )

    pairs = []
    for pid in particles:
        for a, b in itertools.combinations(args.seeds, 2):
            if (a, pid) in models and (b, pid) in models:
                share, rms = model_agreement(models[a, pid], models[b, pid], args.structure)
                pairs.append(
                    {
                        "particle": pid,
                        "seeds": f"{a}-{b}",
                        "atoms_matched_share": share,
                        "atoms_rms_distance_pm": rms,
                    }
                )
        lattice = seeds.loc[seeds.particle == pid].get("lattice_parameter_A", pd.Series())
        lattice = lattice.dropna()
        if len(lattice) > 1:
            spread = 100 * (lattice.max() - lattice.min()) / lattice.mean()
            print(f"{pid}: lattice parameter over {len(lattice)} seeds spans {spread:.2f} %")
    pairs = pd.DataFrame(pairs)
    pairs.to_csv(args.out / "seed_pairs.csv", index=False)
    with pd.option_context("display.width", 200):
        print(pairs.round(3).to_string(index=False))
    print(f"tables: {args.out / 'seeds.csv'}, {args.out / 'seed_pairs.csv'}")


if __name__ == "__main__":
    main()
