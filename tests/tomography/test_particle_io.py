import json

import mrcfile
import numpy as np
import pytest
import zarr
from scipy.spatial.transform import Rotation

from nanorecon.io import (
    ORIENTATION_COLUMNS,
    orientations_table,
    read_map_zarr,
    read_orientations,
    read_particle_stack,
    write_map_mrc,
    write_map_zarr,
    write_orientations,
    write_particle_stack,
)


def test_stack_round_trip(tmp_path):
    images = np.random.default_rng(0).standard_normal((5, 16, 16)).astype(np.float32)
    path = write_particle_stack(
        tmp_path / "stack.zarr", images, pixel_size_A=0.35, attrs={"tilt_axis_deg": 1.5}
    )
    back, attrs = read_particle_stack(path)
    np.testing.assert_array_equal(back, images)
    assert attrs["pixel_size_A"] == 0.35 and attrs["tilt_axis_deg"] == 1.5
    with pytest.raises(ValueError, match="box"):
        write_particle_stack(tmp_path / "bad.zarr", images[:, :, :8], pixel_size_A=0.35)


def test_orientations_round_trip(tmp_path):
    rotations = Rotation.random(7, random_state=1)
    shifts = np.random.default_rng(1).uniform(-2, 2, (7, 2))
    table = orientations_table(
        rotations, shifts, half_sets=np.arange(7) % 2 + 1, scores=np.linspace(0.9, 1, 7)
    )
    assert list(table.columns) == ORIENTATION_COLUMNS
    write_orientations(tmp_path / "orientations.parquet", table)
    back, back_rotations = read_orientations(tmp_path / "orientations.parquet")
    assert (back_rotations * rotations.inv()).magnitude().max() < 1e-12
    np.testing.assert_allclose(back[["shift_x_A", "shift_y_A"]].to_numpy(), shifts)
    assert back["half_set"].tolist() == [1, 2, 1, 2, 1, 2, 1] and back["used"].all()
    # The Euler columns describe the same rotations (RELION ZYZ).
    euler = Rotation.from_euler("ZYZ", back[["rot_deg", "tilt_deg", "psi_deg"]], degrees=True)
    assert (euler.inv() * rotations.inv()).magnitude().max() < 1e-9
    with pytest.raises(ValueError, match="half_set"):
        orientations_table(rotations, shifts, half_sets=np.zeros(7))


def test_map_round_trip_with_ome_metadata(tmp_path):
    rng = np.random.default_rng(2)
    maps = {name: rng.random((8, 10, 12)).astype(np.float32) for name in ("map", "half1", "half2")}
    path = write_map_zarr(tmp_path / "map.zarr", maps, voxel_size_A=0.4, attrs={"note": "x"})
    back, attrs = read_map_zarr(path)
    for name in maps:
        np.testing.assert_array_equal(back[name], maps[name])
    assert attrs["voxel_size_A"] == 0.4 and attrs["maps"] == ["map", "half1", "half2"]
    # OME-Zarr 0.5: the image group carries "ome" with multiscales, axes in Å and a scale.
    group = zarr.open_group(str(path / "map"), mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    multiscale = ome["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in multiscale["axes"]} == {"angstrom"}
    transforms = multiscale["datasets"][0]["coordinateTransformations"]
    assert transforms[0] == {"type": "scale", "scale": [0.4, 0.4, 0.4]}
    assert transforms[1]["translation"] == pytest.approx([-1.6, -2.0, -2.4])
    assert multiscale["datasets"][0]["path"] == "0" and group["0"].shape == (8, 10, 12)
    json.dumps(dict(group.attrs))


def test_map_mrc_has_voxel_size(tmp_path):
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    write_map_mrc(tmp_path / "map.mrc", volume, voxel_size_A=0.35)
    with mrcfile.open(tmp_path / "map.mrc") as mrc:
        np.testing.assert_array_equal(mrc.data, volume)
        assert float(mrc.voxel_size.x) == pytest.approx(0.35, abs=1e-6)


def test_map_zarr_is_read_by_the_atoms_stage(tmp_path):
    """`nanorecon trace` reads what `nanorecon reconstruct` writes: map and half maps."""
    from nanorecon.io import read_map

    rng = np.random.default_rng(3)
    maps = {
        name: rng.standard_normal((12, 12, 12)).astype(np.float32)
        for name in ("map", "half1", "half2")
    }
    path = write_map_zarr(tmp_path / "map.zarr", maps, voxel_size_A=0.35)
    volume, voxel_size_A, extras = read_map(path)
    np.testing.assert_array_equal(volume, maps["map"])
    assert voxel_size_A == 0.35
    np.testing.assert_array_equal(extras["half_maps"][0], maps["half1"])
    np.testing.assert_array_equal(extras["half_maps"][1], maps["half2"])
