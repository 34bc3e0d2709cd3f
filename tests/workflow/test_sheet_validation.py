"""The workflow rejects bad sample sheets before anything runs, naming the sheet line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

HEADER = (
    "dataset\tmodality\tpath\tpixel_size_A\tvoltage_kV\telements\ttilt_angles\t"
    "frame_rate_hz\tdose_e_per_A2\tdefocus_A\tcs_mm\n"
)
GOOD_TOMO = "tomo1\ttomography\tts.mrc\t0.35\t300\tPt\tts.tlt\t\t1000\t\t\n"
GOOD_MOVIE = "movie1\tbrownian\tmovie.mrc\t0.36\t300\tPt\t\t400\t50\t100\t0.001\n"


def dry_run(run_snakemake, workdir: Path, sheet_text: str):
    sheet = workdir / "sheet.tsv"
    sheet.write_text(sheet_text)
    return run_snakemake(workdir, "-n", "--cores", "1", "--config", f"samples={sheet}")


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (GOOD_TOMO + GOOD_TOMO, ["'tomo1' appears on lines 2, 3", "must be unique"]),
        (
            GOOD_TOMO.replace("tomography", "tomogram"),
            [
                "line 2 (dataset 'tomo1')",
                "unknown modality 'tomogram'",
                "'tomography' or 'brownian'",
            ],
        ),
        (
            GOOD_TOMO.replace("\tPt\t", "\tFe,Xx\t"),
            ["line 2 (dataset 'tomo1')", "unknown element symbol(s) ['Xx']", "e.g. Pt or Fe,Pt"],
        ),
        (
            GOOD_MOVIE + GOOD_TOMO.replace("ts.tlt", ""),
            ["line 3 (dataset 'tomo1')", "tilt-angle file"],
        ),
        (
            GOOD_MOVIE.replace("\t400\t", "\t\t"),
            ["line 2 (dataset 'movie1')", "frame_rate_hz"],
        ),
        (
            GOOD_MOVIE.replace("\t0.36\t", "\tabc\t"),
            ["line 2 (dataset 'movie1')", "'pixel_size_A' must be a number, got 'abc'"],
        ),
    ],
    ids=["duplicate", "modality", "element", "no-tilts", "no-frame-rate", "not-a-number"],
)
def test_bad_sheet_is_rejected_with_its_line(
    run_snakemake, workdir: Path, rows: str, expected: list[str]
):
    result = dry_run(run_snakemake, workdir, HEADER + rows)
    assert result.returncode != 0
    for text in expected:
        assert text in result.stdout, result.stdout
    assert not (workdir / "results").exists()


def test_missing_columns_are_named(run_snakemake, workdir: Path):
    result = dry_run(run_snakemake, workdir, "dataset\tmodality\tpath\nx\ttomography\ta.mrc\n")
    assert result.returncode != 0
    assert "missing column(s) voltage_kV, elements" in result.stdout


def test_negative_pixel_size_fails_schema(run_snakemake, workdir: Path):
    result = dry_run(run_snakemake, workdir, HEADER + GOOD_TOMO.replace("\t0.35\t", "\t-0.35\t"))
    assert result.returncode != 0
    assert "pixel_size_A" in result.stdout


def test_missing_sheet_says_how_to_set_it(run_snakemake, workdir: Path):
    result = run_snakemake(workdir, "-n", "--cores", "1", "--config", "samples=nowhere.tsv")
    assert result.returncode != 0
    assert "sample sheet nowhere.tsv not found" in result.stdout
    assert "--config samples=" in result.stdout


def test_optional_columns_may_be_left_out(run_snakemake, workdir: Path):
    (workdir / "movie.mrc").write_bytes(b"")
    sheet = (
        "dataset\tmodality\tpath\tvoltage_kV\telements\tframe_rate_hz\n"
        "m\tbrownian\tmovie.mrc\t300\tPt\t400\n"
    )
    result = dry_run(run_snakemake, workdir, sheet)
    assert result.returncode == 0, result.stdout
    assert "results/m/raw.zarr" in result.stdout


def test_good_sheet_plans_ingest_per_dataset(run_snakemake, workdir: Path):
    for name in ("ts.mrc", "ts.tlt", "movie.mrc"):
        (workdir / name).write_bytes(b"")
    result = dry_run(run_snakemake, workdir, HEADER + GOOD_TOMO + GOOD_MOVIE)
    assert result.returncode == 0, result.stdout
    assert "nanorecon ingest" in result.stdout
    assert "results/tomo1/raw.zarr" in result.stdout
    assert "results/movie1/raw.zarr" in result.stdout
