# Configuration and sample-sheet loading and validation; path helpers shared by the rules.
# The workflow layer only knows the CLI, so this file uses pandas and the schemas, never nanorecon itself.
import json
import os
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config["results"].rstrip("/")
LOGS = config["logs"].rstrip("/")
SHEET = Path(config["samples"])
# Simulated datasets are generated here (config key `simulate`); sheets point at these files.
SIMULATED = "resources/simulated"
# One particle's folder; {pid} is p000, p001, ...
PARTICLE = f"{RESULTS}/{{dataset}}/particles/{{pid}}"


wildcard_constraints:
    pid=r"p\d+",
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",

# As `nanorecon ingest` reads the sheet: these must be in the header, the others may be left out.
REQUIRED_COLUMNS = ["dataset", "modality", "path", "voltage_kV", "elements"]
OPTIONAL_COLUMNS = [
    "pixel_size_A",
    "tilt_angles",
    "frame_rate_hz",
    "dose_e_per_A2",
    "defocus_A",
    "cs_mm",
    "truth",  # the simulator's ground-truth folder (simulated data only)
]
MODALITIES = ("tomography", "brownian")
# fmt: off
CHEMICAL_SYMBOLS = frozenset("""
H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr
Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb
Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf
Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og
""".split())
# fmt: on


def sheet_error(line, dataset, message):
    where = f"{SHEET}, line {line}" + (f" (dataset '{dataset}')" if dataset else "")
    return WorkflowError(f"sample sheet {where}: {message}")


def load_samples(sheet):
    """Read and check the sample sheet; clear messages name the sheet line and the fix."""
    if not sheet.is_file():
        raise WorkflowError(
            f"sample sheet {sheet} not found; set `samples` in config/config.yaml "
            f"or run with --config samples=/path/to/samples.tsv"
        )
    table = pd.read_csv(
        sheet, sep="\t", dtype=str, keep_default_na=False, comment="#", skip_blank_lines=True
    )
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise WorkflowError(
            f"sample sheet {sheet}: missing column(s) {', '.join(missing)}; the header must name "
            f"{', '.join(REQUIRED_COLUMNS)} and may add {', '.join(OPTIONAL_COLUMNS)} "
            "(tab-separated, empty cells allowed)"
        )
    table = table.apply(lambda column: column.str.strip())
    for column in OPTIONAL_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    # file line numbers of the data rows (pandas skipped blank and comment lines)
    content_lines = [
        number
        for number, line in enumerate(sheet.read_text().splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    table["sheet_line"] = content_lines[1 : len(table) + 1]
    for row in table.itertuples():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", row.dataset):
            raise sheet_error(
                row.sheet_line, row.dataset,
                "dataset ids may use letters, digits, '_', '-' and '.', and must not be empty",
            )
        if row.modality not in MODALITIES:
            raise sheet_error(
                row.sheet_line, row.dataset,
                f"unknown modality '{row.modality}'; use 'tomography' or 'brownian'",
            )
        unknown = [e for e in row.elements.split(",") if e.strip() not in CHEMICAL_SYMBOLS]
        if unknown or not row.elements:
            raise sheet_error(
                row.sheet_line, row.dataset,
                f"unknown element symbol(s) {unknown or [row.elements]} in column 'elements'; "
                "give chemical symbols separated by commas, e.g. Pt or Fe,Pt",
            )
        if row.modality == "tomography" and not row.tilt_angles:
            raise sheet_error(
                row.sheet_line, row.dataset,
                "tomography needs a tilt-angle file (.tlt/.rawtlt) in column 'tilt_angles'",
            )
        if row.modality == "brownian" and not row.frame_rate_hz:
            raise sheet_error(
                row.sheet_line, row.dataset, "brownian movies need 'frame_rate_hz' (frames per second)"
            )
    duplicated = table[table.dataset.duplicated(keep=False)]
    if len(duplicated):
        lines = ", ".join(str(n) for n in duplicated.sheet_line)
        raise WorkflowError(
            f"sample sheet {sheet}: dataset id '{duplicated.dataset.iloc[0]}' appears on lines "
            f"{lines}; dataset ids must be unique"
        )
    numeric = ["pixel_size_A", "voltage_kV", "frame_rate_hz", "dose_e_per_A2", "defocus_A", "cs_mm"]
    for column in numeric:
        values = pd.to_numeric(table[column].replace("", None), errors="coerce")
        bad = table[(table[column] != "") & values.isna()]
        if len(bad):
            row = bad.iloc[0]
            raise sheet_error(
                row.sheet_line, row.dataset, f"column '{column}' must be a number, got '{row[column]}'"
            )
        table[column] = values
    validate(table.drop(columns="sheet_line"), schema="../schemas/samples.schema.yaml")
    return table.set_index("dataset", drop=False)


def sheet_path(value):
    """A sheet path resolved against the sheet's folder, relative to the working directory if inside it."""
    path = Path(value) if os.path.isabs(value) else SHEET.parent / value
    path = Path(os.path.normpath(path.absolute()))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


samples = load_samples(SHEET)


def sample(dataset):
    return samples.loc[dataset]


def raw_inputs(wildcards):
    row = sample(wildcards.dataset)
    inputs = {"raw": sheet_path(row.path)}
    if row.modality == "tomography":
        inputs["tilts"] = sheet_path(row.tilt_angles)
    return inputs


def datasets(modality=None, *, with_truth=None):
    """Dataset ids of the sheet, optionally of one modality and with or without a truth folder."""
    selected = samples
    if modality is not None:
        selected = selected[selected.modality == modality]
    if with_truth is not None:
        selected = selected[(selected.truth != "") == with_truth]
    return list(selected.dataset)


def truth_dir(wildcards):
    """The sheet's `truth` folder of a simulated dataset (resolved like the other paths)."""
    return sheet_path(sample(wildcards.dataset).truth)


def reconstruct_inputs(wildcards):
    """raw.zarr, and the truth folder of simulated datasets (scored against it)."""
    inputs = {"raw": f"{RESULTS}/{wildcards.dataset}/raw.zarr"}
    if wildcards.dataset in datasets(with_truth=True):
        inputs["truth"] = truth_dir(wildcards)
    return inputs


def is_brownian(dataset):
    return sample(dataset).modality == "brownian"


def refine_particles_inputs(wildcards):
    """The particle list and the movie (its frame rate), and the truth folder of simulated data."""
    inputs = {
        "particles": f"{RESULTS}/{wildcards.dataset}/particles.tsv",
        "raw": f"{RESULTS}/{wildcards.dataset}/raw.zarr",
    }
    if wildcards.dataset in datasets(with_truth=True):
        inputs["truth"] = truth_dir(wildcards)
    return inputs


def dask_threads():
    """Cores of the refine_particles job: its local dask workers × their threads."""
    dask = config["dask"]
    if dask["scheduler_address"]:
        return 1  # the work runs on the scheduler's workers
    return (dask["n_workers"] or 2) * dask["threads_per_worker"]


def brownian_abinitio_options():
    """`nanorecon refine-particles` flags of the config's ab initio method."""
    brownian = config["brownian"]
    flags = [f"--abinitio {brownian['abinitio']}"]
    if brownian["abinitio"] == "crystal":
        # --structure comes with the rule's other flags: the lattice fit of --choose-by needs it
        flags += [
            f"--crystal-grid {brownian['crystal_grid']}",
            f"--crystal-band-A {brownian['crystal_band_A']}",
            f"--step-deg {brownian['step_deg']}",
        ]
        if brownian["lattice_parameter_A"] is not None:
            flags.append(f"--lattice-parameter-A {brownian['lattice_parameter_A']}")
    return " ".join(flags)


def dask_options(threads, resources):
    """`nanorecon refine-particles` flags of the config's dask section, for the granted cores."""
    dask = config["dask"]
    per_worker = dask["threads_per_worker"]
    cluster = dask["cluster"]
    if cluster == "auto" and resources.gpu == 0:
        cluster = "cpu"  # no GPU granted: never start a CUDA cluster
    flags = [f"--cluster {cluster}", f"--threads-per-worker {per_worker}"]
    if dask["scheduler_address"]:
        flags.append(f"--scheduler-address {shlex.quote(dask['scheduler_address'])}")
    elif dask["n_workers"]:
        flags.append(f"--workers {dask['n_workers']}")
    elif resources.gpu == 0:
        flags.append(f"--workers {max(1, threads // per_worker)}")
    # else: a GPU cluster starts one worker per granted GPU
    return " ".join(flags)


def particle_ids(wildcards):
    """Particles of a dataset: a tilt series holds one; a movie those its refinement kept (ok)."""
    if not is_brownian(wildcards.dataset):
        return ["p000"]
    table = checkpoints.refine_particles.get(dataset=wildcards.dataset).output[0]
    refined = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    return sorted(refined.loc[refined.status == "ok", "particle"])


def particle_map_input(wildcards):
    """What the particle's map.zarr comes from: the tomography rule, or the Brownian checkpoint."""
    if is_brownian(wildcards.dataset):
        return f"{RESULTS}/{wildcards.dataset}/refinement.tsv"
    return f"{particle_dir(wildcards)}/map.zarr"


def matched_particle(wildcards):
    """`nanorecon validate` flags naming the true particle of a Brownian track (from its refinement)."""
    if not is_brownian(wildcards.dataset):
        return ""
    table = shlex.quote(f"{particle_dir(wildcards)}/orientation_validation.csv")
    return f"--matched {table}"


def particle_dir(wildcards):
    return f"{RESULTS}/{wildcards.dataset}/particles/{wildcards.pid}"


def particle_dirs(wildcards):
    return " ".join(
        shlex.quote(f"{RESULTS}/{wildcards.dataset}/particles/{pid}")
        for pid in particle_ids(wildcards)
    )


def particle_outputs(wildcards):
    """Every per-particle file the dataset tables are made from."""
    outputs = []
    with_truth = wildcards.dataset in datasets(with_truth=True)
    for pid in particle_ids(wildcards):
        folder = f"{RESULTS}/{wildcards.dataset}/particles/{pid}"
        outputs += [f"{folder}/atoms.parquet", f"{folder}/lattice.json"]
        # a Brownian particle's fsc.csv is written by the dataset's refine_particles checkpoint
        if not is_brownian(wildcards.dataset):
            outputs.append(f"{folder}/fsc.csv")
        if with_truth:
            outputs.append(f"{folder}/validation.csv")
    return outputs


def refinement_table(wildcards):
    """A Brownian dataset's refinement.tsv: the summary lists every particle, traced or not."""
    return [f"{RESULTS}/{wildcards.dataset}/refinement.tsv"] if is_brownian(wildcards.dataset) else []


def refinement_option(wildcards):
    return " ".join(f"--refinement {shlex.quote(path)}" for path in refinement_table(wildcards))


def simulations(modality):
    return [name for name, sim in config.get("simulate", {}).items() if sim["modality"] == modality]


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def all_outputs():
    """Everything that exists for every dataset: raw.zarr, and the tables where particles are made.

    Brownian datasets add their refinement table here and their particles tables through
    :func:`brownian_tables`, which waits for the refine_particles checkpoint."""
    outputs = expand(f"{RESULTS}/{{dataset}}/raw.zarr", dataset=samples.dataset)
    for dataset in datasets("brownian"):
        outputs.append(f"{RESULTS}/{dataset}/refinement.tsv")
    for dataset in datasets("tomography"):
        outputs.append(f"{RESULTS}/{dataset}/particles.csv")
        if dataset in datasets(with_truth=True):
            outputs.append(f"{RESULTS}/{dataset}/validation.csv")
    outputs += figure_targets()  # defined in report.smk
    return outputs


def brownian_tables(wildcards):
    """particles.csv (and validation.csv) of every Brownian dataset, figures where atoms were traced.

    The tables list every particle of refinement.tsv with its status, so they are rewritten even
    when no particle refined well enough to trace (no table of an earlier run is left behind)."""
    outputs = []
    for dataset in datasets("brownian"):
        outputs.append(f"{RESULTS}/{dataset}/particles.csv")
        if dataset in datasets(with_truth=True):
            outputs.append(f"{RESULTS}/{dataset}/validation.csv")
        if particle_ids(SimpleNamespace(dataset=dataset)):
            outputs += particle_figure_targets(dataset)  # defined in report.smk
    return outputs
