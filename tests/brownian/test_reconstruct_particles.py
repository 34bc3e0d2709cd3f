"""The per-particle Brownian chain (ab initio → refinement → half maps, FSC) and its CLI verb."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.cluster import Octahedron
from scipy.spatial.transform import Rotation
from synthetic_particles import tumbling_stack

from nanorecon.brownian import (
    align_orientations,
    high_resolution_bands,
    initial_orientations,
    reconstruct_particle,
    select_frames,
    time_block_half_sets,
)
from nanorecon.brownian._reconstruct import _hold_register, _variant_rank
from nanorecon.cli import main
from nanorecon.cli._refine_particles import LatticeFitScore, resolution_failure
from nanorecon.geometry import largest_fourier_gap_deg, quaternions_from_rotations
from nanorecon.io import (
    orientations_table,
    read_map_zarr,
    read_orientations,
    write_atoms_parquet,
    write_orientations,
    write_particle_stack,
)
from nanorecon.simulate import (
    atoms_to_volume,
    make_particle,
)

FRAME_RATE_HZ = 400.0
PIXEL_SIZE_A = 0.7
STEP_RMS_DEG = 5.0


def _tumbling_stack(n_frames, size, seed):
    """Frames of a ~100-atom Pt particle tumbling 5°/frame, atoms DARK as after phase flipping.

    The projected potential scaled to unit standard deviation plus white noise of 0.5, negated
    (a phase-flipped weak-phase image shows ``1 − 2 φ ⊛ |sin χ|``).
    """
    images, rotations, diffusion, _ = tumbling_stack(
        n_frames, size, seed, step_rms_deg=STEP_RMS_DEG, pixel_size_A=PIXEL_SIZE_A
    )
    return -images, rotations, diffusion


@pytest.fixture(scope="module")
def movie():
    images, rotations, diffusion = _tumbling_stack(56, 32, seed=1)
    used = np.ones(len(images), bool)
    used[[20, 21]] = False  # dropped by frame selection: they must not enter the maps
    return {"images": images, "rotations": rotations, "diffusion": diffusion, "used": used}


@pytest.fixture(scope="module")
def result(movie):
    return reconstruct_particle(
        movie["images"],
        pixel_size_A=PIXEL_SIZE_A,
        frame_rate_hz=FRAME_RATE_HZ,
        used=movie["used"],
        n_starts=2,
        n_rounds=2,
        n_iterations=10,
        final_lowpass_A=1.5,
        # 0.7 Å pixels hardly resolve the atoms, so the map itself is the better reference here
        atomic_model_reference=False,
        half_set_block_frames=8,
    )


def test_orientations_are_recovered(result, movie):
    used = movie["used"]
    alignment = align_orientations(result.rotations[np.flatnonzero(used)], movie["rotations"][used])
    errors = alignment.errors_deg
    # Measured: median 1.3°, 90th percentile 2.3° (ab initio alone: 4.5°, 8.4°; least-squares
    # matching instead of the local search: 2.4°, 4.7°).
    assert np.median(errors) < 2.5
    assert np.percentile(errors, 90) < 4.5
    # the dropped frames get orientations interpolated in time between their neighbours
    dropped = alignment.apply(result.rotations[[20, 21]]) * movie["rotations"][[20, 21]].inv()
    assert np.degrees(dropped.magnitude()).max() < 12.0
    assert np.isnan(result.scores[~used]).all() and np.isfinite(result.scores[used]).all()


def test_half_maps_and_fsc(result, movie):
    np.testing.assert_array_equal(result.used, movie["used"])
    np.testing.assert_array_equal(
        result.half_sets, time_block_half_sets(np.arange(56), block_frames=8)
    )
    assert result.volume.shape == (32, 32, 32)
    assert all(m.shape == (32, 32, 32) for m in result.half_maps)
    assert result.volume.max() > 0  # atoms bright after the contrast flip
    # Measured: 1.4 Å (Nyquist): noise-free atoms, positivity and the support tie the halves.
    assert 1.4 <= result.resolution_A < 3.0
    # the halves as refined apart, before the wide re-search: the gate's test of the solution
    assert 1.4 <= result.independent_resolution_A < 3.0
    assert {"spatial_frequency_1_per_A", "fsc"} <= set(result.fsc.columns)
    assert result.fsc["fsc"].iloc[1] > 0.9
    assert result.starts["chosen"].sum() == 1 and len(result.starts) == 2
    # both seeds find the same orientations (the reproducibility that refine-particles requires)
    assert result.starts["agrees"].all()
    # Measured: 1.1 × the truth (56 frames).
    assert 0.5 < result.rotational_diffusion_rad2_per_s / movie["diffusion"] < 2.0
    # the two iterations below 2.5 Å refine all frames (half set 0), then each half set is
    # refined on its own (gold standard); the wide re-search takes all frames again and each
    # half set ends on its own: every stage's iterations are logged apart
    stages = result.history.groupby(["stage", "half_set"]).size().to_dict()
    late = "high-resolution-re-searched"
    stages = {key: size for key, size in stages.items() if not key[0].startswith("high-res")}
    assert stages == {
        ("shared", 0): 2,
        ("halves", 1): 8,
        ("halves", 2): 8,
        ("re-search", 0): 3,
        ("polish", 1): 4,
        ("polish", 2): 4,
    }
    # then all frames past 2 Å: four iterations at 1.7 Å and four at the 2.1-pixel floor (one
    # variant only: without a CTF there is no transfer to weigh the comparisons by)
    rounds = result.history[result.history.stage == "high-resolution"]
    assert rounds.half_set.eq(0).all()
    assert rounds.lowpass_A.round(2).tolist() == [1.7] * 4 + [1.47] * 4
    assert rounds.search_radius_deg.max() == 3.0
    # then the late re-search: three iterations in the 30° ball at 1.7 Å, and the rounds again;
    # without a map score the finer FSC keeps one run, and the other's iterations are not kept
    again = result.history[result.history.stage == late]
    assert again.lowpass_A.round(2).tolist() == [1.7] * 7 + [1.47] * 4
    assert again.search_radius_deg.iloc[0] == 30.0
    variants = result.variants.set_index("variant")
    assert list(variants.index) == ["high-resolution", late]
    kept = variants.resolution_A.idxmin()
    assert variants.kept.tolist() == [kept == "high-resolution", kept == late]
    assert result.resolution_A == variants.resolution_A[kept]
    assert result.history.kept[result.history.stage != late].all()
    assert result.history.kept[result.history.stage == late].all() == (kept == late)
    assert result.history.lowpass_A[result.history.stage == "shared"].min() > 2.5
    assert result.history.search_radius_deg[result.history.stage == "re-search"].max() == 30.0


def _runs_past_2A(movie, map_score, **options):
    """32 frames with a CTF, one round past 2 Å (so two runs, weighted and not), no re-search
    at 2.5–2.2 Å: the cheapest reconstruction whose runs past 2 Å a map score chooses between."""
    return reconstruct_particle(
        movie["images"][:32],
        pixel_size_A=PIXEL_SIZE_A,
        frame_rate_hz=FRAME_RATE_HZ,
        n_starts=1,
        wide_research=False,
        high_resolution_rounds=1,
        ctf={"voltage_kV": 300.0, "defocus_A": -300.0, "cs_mm": 0.0},
        half_set_block_frames=4,
        map_score=map_score,
        **options,
    )


def test_map_score_chooses_between_the_high_resolution_runs(movie):
    """With a CTF the rounds past 2 Å run twice; the caller's map score, not the FSC, keeps one."""
    calls = []

    def score(volume, half_maps):
        calls.append((np.array(volume), [np.array(m) for m in half_maps]))
        return [0.30, 0.12][len(calls) - 1]  # the second run (unweighted) scores better

    result = _runs_past_2A(movie, score, late_research=False)
    assert len(calls) == 2
    variants = result.variants.set_index("variant")
    assert list(variants.index) == ["high-resolution-weighted", "high-resolution-unweighted"]
    assert variants.score.tolist() == [0.30, 0.12]
    assert variants.kept.tolist() == [False, True]
    assert (variants.resolution_A > 0).all()
    # the kept run's maps are the ones returned, and its iterations the ones marked kept
    np.testing.assert_array_equal(result.volume, calls[1][0])
    np.testing.assert_array_equal(result.half_maps[0], calls[1][1][0])
    kept_stages = set(result.history.stage[result.history.kept])
    assert "high-resolution-unweighted" in kept_stages
    assert "high-resolution-weighted" not in kept_stages


@pytest.mark.parametrize(
    ("scores", "kept"),
    [
        ([0.30, 0.12, 0.05], "high-resolution-unweighted-re-searched"),
        ([0.30, 0.12, 0.20], "high-resolution-unweighted"),
    ],
)
def test_late_research_starts_from_the_best_run_and_is_kept_only_if_it_scores_better(
    movie, scores, kept
):
    """The late re-search searches all frames in the 30° ball from the better of the two runs,
    at the first round's band, then reruns the rounds; the best scoring of the three maps is
    kept, and the stages its geometry went through are the kept history."""
    calls = []

    def score(volume, half_maps):
        calls.append(np.array(volume))
        return scores[len(calls) - 1]

    result = _runs_past_2A(movie, score)
    late = "high-resolution-unweighted-re-searched"
    assert len(calls) == 3
    variants = result.variants.set_index("variant")
    assert list(variants.index) == [
        "high-resolution-weighted",
        "high-resolution-unweighted",
        late,
    ]
    assert variants.score.tolist() == scores
    assert variants.index[variants.kept].tolist() == [kept]
    np.testing.assert_array_equal(result.volume, calls[variants.index.get_loc(kept)])
    history = result.history
    research = history[history.stage == late]
    # the wide ball at the round's band first, then the round's own small ball
    round_band = history.lowpass_A[history.stage == "high-resolution-unweighted"].max()
    assert research.search_radius_deg.iloc[0] == 30.0
    assert (research.lowpass_A == round_band).all()
    assert research.search_radius_deg.iloc[-1] <= 3.0
    kept_stages = set(history.stage[history.kept])
    assert "high-resolution-weighted" not in kept_stages
    assert "high-resolution-unweighted" in kept_stages
    assert (late in kept_stages) == (kept == late)


def test_runs_without_a_score_rank_by_their_fsc():
    assert _variant_rank(0.1, 1.6) < _variant_rank(0.2, 1.2)  # the score first
    assert _variant_rank(np.nan, 1.2) < _variant_rank(np.nan, 1.6)  # then the FSC
    assert _variant_rank(0.5, 1.6) < _variant_rank(np.nan, 1.2)  # unmeasured scores rank last
    assert _variant_rank(np.nan, 1.6) < _variant_rank(np.nan, np.nan)


def test_lattice_fit_score_measures_how_closely_and_fully_traced_atoms_fill_a_lattice(caplog):
    """The truth-free score of refine-particles: a map of atoms displaced at random from their
    fcc sites scores their RMS displacement; one of the ideal crystal scores about zero; one
    that lost its centre atom counts the empty site."""
    voxel_A = 0.36
    ideal = Octahedron("Pt", 6, 2, latticeconstant=3.92).positions
    ideal = ideal - ideal.mean(axis=0)
    rng = np.random.default_rng(0)
    score = LatticeFitScore(["Pt"], "fcc", voxel_A)
    for jitter_A in (0.0, 0.05, 0.1):
        positions = ideal + rng.normal(0.0, jitter_A, ideal.shape)
        volume = atoms_to_volume(positions, np.ones(len(positions)), (64,) * 3, voxel_A, 0.4)
        noise = 0.02 * float(volume.max())
        halves = [volume + rng.normal(0, noise, volume.shape).astype(np.float32) for _ in "12"]
        displaced_A = np.sqrt(np.mean(np.sum((positions - ideal) ** 2, axis=1)))
        # measured: 0.000, 0.086 and 0.174 Å for atoms 0, 0.087 and 0.177 Å off their sites
        assert score(volume, tuple(halves)) == pytest.approx(displaced_A, abs=0.03)
    complete = score.records[0]
    assert complete["n_atoms"] == len(ideal)
    assert (complete["n_outliers"], complete["n_empty_sites"]) == (0, 0)
    # the lost centre atom counts the cap, a/4, though the fit of the others is as good
    centre = np.argmin(np.linalg.norm(ideal, axis=1))
    lost = np.delete(ideal, centre, axis=0)
    volume = atoms_to_volume(lost, np.ones(len(lost)), (64,) * 3, voxel_A, 0.4)
    with caplog.at_level("INFO", logger="nanorecon.refine_particles"):
        lost_score = score(volume, (volume, volume))
    assert lost_score == pytest.approx(0.25 * 3.92 / np.sqrt(len(ideal)), abs=0.01)
    assert score.records[-1]["fit_rms_pm"] < 1.0
    assert f"candidate map 3: {len(lost)} atoms traced" in caplog.text
    assert "0 outliers, 1 empty sites inside" in caplog.text
    # nothing to trace: no score, so the FSC decides
    flat = np.zeros((32,) * 3, np.float32)
    assert np.isnan(score(flat, (flat, flat)))
    # every map is recorded, its atoms too where it had some
    assert [r["candidate"] for r in score.records] == [0, 1, 2, 3, 4]
    assert sorted(pd.concat(score.atoms).candidate.unique()) == [0, 1, 2, 3]
    variants = pd.DataFrame(
        {"start": [1, 1, 0, 0, 2], "variant": list("abcde"), "kept": [0, 0, 0, 1, 0]}
    )
    table = score.table(variants)
    assert table.columns[:3].tolist() == ["candidate", "start", "variant"]
    assert table.kept.tolist() == [False, False, False, True, False]
    assert "start" not in score.table(variants.iloc[:2])


def test_high_resolution_bands():
    # each 0.85 of the last past the finest band so far, down to 2.1 pixels, none repeated
    assert high_resolution_bands(2.0, rounds=3, pixel_size_A=0.36) == (1.7, 1.445, 1.228)
    assert high_resolution_bands(2.0, rounds=5, pixel_size_A=0.36) == (
        1.7,
        1.445,
        1.228,
        1.044,
        0.887,
    )
    assert high_resolution_bands(2.0, rounds=3, pixel_size_A=0.7) == (1.7, 1.47)
    # coarse pixels: 2.1 pixels is no finer than the last band, so no round
    assert high_resolution_bands(2.0, rounds=3, pixel_size_A=1.0) == ()
    assert high_resolution_bands(2.0, rounds=0, pixel_size_A=0.36) == ()


def test_half_set_register_is_held():
    """A half set that drifted as a whole (one turn of the map frame, one 3D shift) is brought
    back to its start; the frame-to-frame corrections stay."""
    rng = np.random.default_rng(5)
    start = Rotation.random(60, random_state=6)
    start_shifts = rng.normal(0, 0.5, (60, 2))
    corrections = Rotation.from_rotvec(rng.normal(0, np.radians(1.0), (60, 3)))
    corrected = corrections * start  # what the refinement should keep (microscope frame)
    drift, offset = Rotation.from_rotvec(np.radians([2.0, -1.0, 0.5])), np.array([0.3, -0.2, 0.4])
    drifted = corrected * drift
    in_plane = drifted.as_matrix()[:, :2, :]
    shifts = start_shifts + rng.normal(0, 0.05, (60, 2)) + in_plane @ offset
    rotations, held = _hold_register(drifted, shifts, start, start_shifts)
    # measured: at most 0.17° from the corrected orientations, shifts 0.07 Å RMS from the start's
    errors = np.degrees((rotations * corrected.inv()).magnitude())
    assert errors.max() < 0.3
    assert np.sqrt(((held - start_shifts) ** 2).sum(axis=1).mean()) < 0.1


def test_resolution_gate_also_needs_the_halves_refined_apart():
    assert resolution_failure(1.6, 1.7, 2.0) == ""
    assert resolution_failure(2.8, 2.8, 2.0).startswith("FSC 0.143 at 2.80 Å, coarser")
    # a wrong solution whose FSC the shared re-search lifted past the gate still fails it
    assert "refined apart" in resolution_failure(1.9, 2.8, 2.0)
    assert resolution_failure(1.6, float("nan"), 2.0) != ""


def test_time_blocks_alternate():
    halves = time_block_half_sets([3, 4, 5, 6, 8, 9], block_frames=2)
    np.testing.assert_array_equal(halves, [1, 1, 2, 2, 1, 2])
    with pytest.raises(ValueError, match="block_frames"):
        time_block_half_sets([0, 1], block_frames=0)


def test_too_few_frames_are_rejected(movie):
    with pytest.raises(ValueError, match="at least 8 used frames"):
        reconstruct_particle(movie["images"][:6], pixel_size_A=PIXEL_SIZE_A)


# ---- the CLI verb: one dask task per particle, resume, truth matching ----

CLI_SIZE = 24
# the model-free search: these stacks hold an asymmetric particle and no raw.zarr with elements
CHEAP = ["--abinitio", "search", "--starts", "1", "--search-iterations", "4", "--grid", "1500"]
CHEAP += ["--rounds", "1"]
CHEAP += ["--iterations", "5", "--frame-rate-hz", "400", "--particle-diameter-A", "12"]
CHEAP += ["--max-resolution-A", "10", "--cluster", "cpu", "--workers", "1", "--no-progress"]
# track centres in the movie frame [Å]; the truth has a third particle far away
CENTRES_A = {"p000": (30.0, 40.0), "p003": (90.0, 20.0)}


def _write_dataset(root: Path) -> tuple[Path, dict[str, object]]:
    """A dataset folder as `nanorecon extract` leaves it (two particles), and its truth folder."""
    truth_rows, rotations = [], {}
    listing = []
    for k, (pid, (x, y)) in enumerate(CENTRES_A.items()):
        images, true_rotations, _ = _tumbling_stack(24, CLI_SIZE, seed=10 + k)
        rotations[pid] = true_rotations
        folder = root / "particles" / pid
        folder.mkdir(parents=True)
        write_particle_stack(folder / "stack.zarr", images, pixel_size_A=PIXEL_SIZE_A)
        selection = select_frames(np.ones(len(images)))
        with warnings.catch_warnings():
            # identity rotations are gimbal-locked in ZYZ, as extract knows
            warnings.simplefilter("ignore", UserWarning)
            table = orientations_table(**initial_orientations(selection))
        table["frame"] = np.arange(len(images)) + 5
        table["x_A"], table["y_A"] = x + 0.3, y - 0.2
        table["reason"] = ""
        write_orientations(folder / "orientations.parquet", table)
        listing.append({"particle": pid, "track": k, "n_frames": 24, "n_used": 24, "status": "ok"})
        truth_particle = 2 * k + 1  # ids unlike the track numbers
        quats = quaternions_from_rotations(true_rotations)
        frames = np.arange(24) + 5
        truth_rows.append(
            pd.DataFrame(
                {"frame": frames, "particle": truth_particle, "x_A": x, "y_A": y}
                | {c: quats[:, i] for i, c in enumerate(["qx", "qy", "qz", "qw"])}
                | {"in_view": True}
            )
        )
    listing.append({"particle": "p009", "track": 9, "n_frames": 0, "n_used": 0,
                    "status": "rejected: left field"})  # fmt: skip
    far = truth_rows[0].assign(particle=0, x_A=200.0, y_A=200.0)
    pd.DataFrame(listing).to_csv(root / "particles.tsv", sep="\t", index=False)
    truth = root / "truth"
    truth.mkdir()
    pd.concat([far, *truth_rows]).to_csv(truth / "frames.csv", index=False)
    return truth, rotations


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if not p.name.startswith(".")}


def test_cli_refines_skips_finished_and_redoes_unfinished(tmp_path: Path, caplog):
    root = tmp_path / "dataset"
    truth, rotations = _write_dataset(root)
    with caplog.at_level("WARNING", logger="nanorecon.refine_particles"):
        assert main(["refine-particles", str(root), "--truth", str(truth), *CHEAP]) == 0
    # no raw.zarr names the elements, so the lattice fit cannot rank the maps: the FSC does
    assert "names no elements to trace: the runs past 2 Å are chosen by their FSC" in caplog.text

    table = pd.read_csv(root / "refinement.tsv", sep="\t")
    assert list(table.particle) == ["p000", "p003", "p009"]
    assert list(table.status[:2]) == ["ok", "ok"] and table.status[2].startswith("failed: rejected")
    ok = table[table.status == "ok"]
    assert list(ok.true_particle) == [1, 3]
    assert (ok.n_frames == 24).all() and (ok.resolution_A > 0).all()
    assert (ok.worker_peak_rss_MB > 50).all() and (ok.seconds > 0).all()
    # without a CTF the rounds past 2 Å run once, then again after the late re-search; with no
    # map score the finer FSC keeps one of the two
    for pid, kept in ok.set_index("particle").high_resolution_kept.items():
        runs = pd.read_csv(root / "particles" / pid / "high_resolution_runs.csv")
        assert runs.variant.tolist() == ["high-resolution", "high-resolution-re-searched"]
        assert runs.score.isna().all()
        assert kept == runs.variant[runs.resolution_A.idxmin()]
        assert runs.kept.tolist() == (runs.variant == kept).tolist()
    assert ok.map_score_pm.isna().all()
    # the missing cone of the written orientations of the used frames (a 24-frame tumble leaves one)
    for pid, gap in ok.set_index("particle").fourier_gap_deg.items():
        written, found = read_orientations(root / "particles" / pid / "orientations.parquet")
        assert gap == pytest.approx(largest_fourier_gap_deg(found[written.used.to_numpy()]))
        assert 10 < gap < 90
        # beside it, the same frames' gap in their true orientations (for the validation rows)
        true_gap = ok.set_index("particle").true_fourier_gap_deg[pid]
        used = written.used.to_numpy()
        assert true_gap == pytest.approx(largest_fourier_gap_deg(rotations[pid][used]))
        # a wide missing cone is worth a warning in the rule's log
        assert (f"{pid}: its frames leave a {gap:.0f}° Fourier gap" in caplog.text) == (gap > 50)
    for pid in ("p000", "p003"):
        folder = root / "particles" / pid
        names = ("map.mrc", "fsc.csv", "abinitio_starts.csv", "high_resolution_runs.csv")
        for name in (*names, "refined.json"):
            assert (folder / name).is_file(), name
        maps, attrs = read_map_zarr(folder / "map.zarr")
        assert set(maps) == {"map", "half1", "half2", "mask"}
        assert attrs["voxel_size_A"] == PIXEL_SIZE_A
        # the particle's own mask of the rounds past 2 Å: 0 or 1, the centre inside, within the
        # support sphere of --particle-diameter-A (8 Å radius)
        assert set(np.unique(maps["mask"])) == {0.0, 1.0}
        assert maps["mask"][(CLI_SIZE // 2,) * 3] == 1.0
        assert maps["mask"].sum() * PIXEL_SIZE_A**3 < 4 / 3 * np.pi * 8.0**3
        # ... and the maps' support: nothing outside it
        for name in ("map", "half1", "half2"):
            assert np.abs(maps[name][maps["mask"] == 0]).max() == 0, name
            assert np.abs(maps[name][maps["mask"] == 1]).max() > 0, name
        assert maps["map"].shape == (CLI_SIZE,) * 3
        orientations, _ = read_orientations(folder / "orientations.parquet")
        assert set(orientations.half_set) == {1, 2}
        assert list(orientations.frame) == list(range(5, 29))
        assert "fsc_half" in pd.read_csv(folder / "fsc.csv").columns
        validation = pd.read_csv(folder / "orientation_validation.csv").iloc[0]
        assert validation.match_distance_A == pytest.approx(np.hypot(0.3, 0.2), abs=1e-6)
        assert validation.orientation_error_median_deg >= 0
    # no temporary or old outputs are left behind
    assert not [p for p in (root / "particles" / "p000").iterdir() if p.name.startswith(".")]

    before = {pid: _mtimes(root / "particles" / pid) for pid in ("p000", "p003")}
    assert main(["refine-particles", str(root), "--truth", str(truth), *CHEAP]) == 0
    assert {pid: _mtimes(root / "particles" / pid) for pid in before} == before
    again = pd.read_csv(root / "refinement.tsv", sep="\t")
    pd.testing.assert_frame_equal(again, table)

    # a particle killed before its marker is recomputed; the finished one is left alone
    (root / "particles" / "p003" / "refined.json").unlink()
    assert main(["refine-particles", str(root), "--truth", str(truth), *CHEAP]) == 0
    assert _mtimes(root / "particles" / "p000") == before["p000"]
    redone = _mtimes(root / "particles" / "p003")
    for name in ("map.mrc", "fsc.csv", "orientations.parquet", "refined.json"):
        assert redone[name] > before["p003"][name], name


def test_cli_fails_particles_whose_starts_disagree(tmp_path: Path):
    """Noise has no solution to find twice: the seeds disagree, and the particle is not traced."""
    root = tmp_path / "dataset"
    truth, _ = _write_dataset(root)
    noise = np.random.default_rng(5).normal(size=(24, CLI_SIZE, CLI_SIZE)).astype(np.float32)
    write_particle_stack(
        root / "particles" / "p000" / "stack.zarr", noise, pixel_size_A=PIXEL_SIZE_A
    )
    options = [*CHEAP, "--starts", "2", "--min-agreeing-starts", "2"]
    assert main(["refine-particles", str(root), "--truth", str(truth), *options]) == 0
    table = pd.read_csv(root / "refinement.tsv", sep="\t").set_index("particle")
    assert "ab initio not reproducible: 1 of 2 starts" in table.status["p000"]
    assert table.abinitio_agreeing_starts["p000"] == 1
    # the particle beside it is found again by the second seed (measured: 0.5° apart, noise 8.5°)
    assert table.status["p003"] == "ok" and table.abinitio_agreeing_starts["p003"] == 2
    assert table.abinitio_disagreement_deg["p000"] > 5 * table.abinitio_disagreement_deg["p003"]
    assert table.abinitio_agreeing_starts.notna().sum() == 2  # the rejected track has none


def test_cli_crystal_reference_needs_the_element(tmp_path: Path, capsys):
    """The crystal ab initio takes its lattice from raw.zarr's elements, or from the flag."""
    root = tmp_path / "dataset"
    truth, _ = _write_dataset(root)
    options = [o for o in CHEAP if o not in ("--abinitio", "search")]
    assert main(["refine-particles", str(root), *options]) == 2
    assert "raw.zarr names no elements; pass --lattice-parameter-A" in capsys.readouterr().err
    assert main(["refine-particles", str(root), *options, "--lattice-parameter-A", "-1"]) == 2
    assert "--lattice-parameter-A must be positive" in capsys.readouterr().err
    assert main(["refine-particles", str(root), *CHEAP, "--joint-resolution-A", "-2"]) == 2
    assert "--joint-resolution-A must be 0 (none) or positive" in capsys.readouterr().err
    assert main(["refine-particles", str(root), *CHEAP, "--refine-starts", "2"]) == 2
    assert "--refine-starts must be 1 … --starts (1)" in capsys.readouterr().err
    two = [*CHEAP, "--starts", "2", "--refine-starts", "2"]
    assert main(["refine-particles", str(root), *two]) == 2
    assert "--refine-starts above 1 needs --abinitio crystal" in capsys.readouterr().err
    assert not (root / "refinement.tsv").exists()


def test_validate_scores_a_track_against_its_matched_true_particle(tmp_path: Path):
    rng = np.random.default_rng(3)
    small = make_particle(shape="sphere", diameter_nm=1.4, rng=rng)
    large = make_particle(shape="octahedron", diameter_nm=2.0, rng=rng)
    truth = pd.concat(
        [
            pd.DataFrame(p.positions_A, columns=["x_A", "y_A", "z_A"]).assign(
                element=p.elements, particle=i
            )
            for i, p in enumerate((small, large))
        ]
    )
    truth.to_csv(tmp_path / "atoms.csv", index=False)
    # the traced model: particle 1 turned, moved and with 2 pm noise, in its own map frame
    turn = Rotation.from_euler("zyx", [30, -20, 50], degrees=True)
    positions = turn.apply(large.positions_A) + [0.4, -0.3, 0.2]
    positions += rng.normal(0, 0.02, positions.shape)
    traced = pd.DataFrame(positions, columns=["x_A", "y_A", "z_A"]).assign(element=large.elements)
    write_atoms_parquet(tmp_path / "traced.parquet", traced)
    matched = tmp_path / "orientation_validation.csv"
    pd.DataFrame([{"particle": "p000", "true_particle": 1}]).to_csv(matched, index=False)
    out = tmp_path / "validation.csv"
    args = [str(tmp_path / "traced.parquet"), str(tmp_path / "atoms.csv"), str(out)]
    assert main(["validate", *args, "--matched", str(matched), "--structure", "none"]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row.particle == 1 and row.n_true == len(large.elements)
    assert row.recall == 1.0 and row.precision == 1.0
    # Measured: 12 pm (0 pm without the noise).
    assert 0 < row.rms_error_pm < 20.0
    # without the match the truth holds two particles and validate asks which one
    assert main(["validate", *args, "--structure", "none"]) == 2
