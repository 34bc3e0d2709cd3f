"""``nanorecon simulate``: synthetic tilt series or liquid-cell movies with ground truth."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from nanorecon.cli import UserError
from nanorecon.io import write_simulated_movie, write_simulated_tomography
from nanorecon.simulate import MovieSpec, TomographySpec, simulate_movie, simulate_tilt_series

log = logging.getLogger("nanorecon.simulate")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a tilt series or a liquid-cell movie with ground truth",
        description=(
            "Write a synthetic dataset (MRC stack, tilt angles, samples.tsv) and its ground truth "
            "(truth/) into OUTDIR. Spec keys are the fields of TomographySpec / MovieSpec."
        ),
    )
    parser.add_argument("modality", choices=["tomography", "brownian"])
    parser.add_argument("outdir", type=Path, help="output folder (may exist)")
    parser.add_argument("--dataset", required=True, help="dataset name for the sample sheet")
    parser.add_argument("--spec-file", type=Path, help="YAML or JSON file with spec values")
    parser.add_argument("--spec-json", help="JSON object with spec values; overrides --spec-file")
    parser.add_argument("--seed", type=int, help="random seed; overrides the spec")
    parser.set_defaults(run=run)
    return parser


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_spec_dict(spec_file: Path | None, spec_json: str | None) -> dict[str, Any]:
    """Spec values from a YAML/JSON file, overridden (deep merge) by a JSON string."""
    values: dict[str, Any] = {}
    if spec_file is not None:
        if not spec_file.is_file():
            raise UserError(f"spec file {spec_file} does not exist")
        text = spec_file.read_text(encoding="utf-8")
        try:
            loaded = (
                json.loads(text) if spec_file.suffix.lower() == ".json" else yaml.safe_load(text)
            )
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise UserError(f"cannot parse spec file {spec_file}: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"spec file {spec_file} must hold a mapping of spec keys")
        values = loaded or {}
    if spec_json:
        try:
            override = json.loads(spec_json)
        except json.JSONDecodeError as err:
            raise UserError(f"--spec-json is not valid JSON: {err}") from err
        if not isinstance(override, dict):
            raise UserError("--spec-json must be a JSON object")
        values = _merge(values, override)
    return values


class _Range:
    """Pass frames through while recording their minimum and maximum."""

    def __init__(self) -> None:
        self.lo, self.hi = np.inf, -np.inf

    def watch(self, frames) -> Iterator[np.ndarray]:
        for frame in frames:
            self.lo = min(self.lo, float(frame.min()))
            self.hi = max(self.hi, float(frame.max()))
            yield frame


def run(args: argparse.Namespace) -> int:
    values = load_spec_dict(args.spec_file, args.spec_json)
    if args.seed is not None:
        values["seed"] = args.seed
    spec_cls = TomographySpec if args.modality == "tomography" else MovieSpec
    try:
        spec = spec_cls.from_dict(values)
    except (TypeError, ValueError) as err:
        raise UserError(f"invalid {args.modality} spec: {err}") from err

    if args.modality == "tomography":
        result = simulate_tilt_series(spec)
        sheet = write_simulated_tomography(result, args.outdir, args.dataset)
        shape, lo, hi = result.images.shape, result.images.min(), result.images.max()
    else:
        result = simulate_movie(spec)
        watcher = _Range()
        frames = tqdm(
            result.frames(), total=result.shape[0], desc="frames", unit="frame", file=sys.stderr
        )
        sheet = write_simulated_movie(
            result, args.outdir, args.dataset, frames=watcher.watch(frames)
        )
        shape, lo, hi = result.shape, watcher.lo, watcher.hi
    log.info(
        "%s %s: %d particle(s), %d atoms, %d images of %d × %d px, counts %.0f … %.0f; sheet %s",
        args.modality,
        args.dataset,
        len(result.particles),
        len(result.atoms),
        shape[0],
        shape[1],
        shape[2],
        lo,
        hi,
        sheet,
    )
    return 0
