# Figures of every particle and dataset, annotated for `snakemake --report report.html`.

from types import SimpleNamespace

FIGURES = f"{RESULTS}/{{dataset}}/figures"
# (figure, caption, report category) of one particle; `nanorecon figures` names the PNGs so
PARTICLE_FIGURES = [
    ("fsc", "fsc.rst", "Reconstruction"),
    ("map_axes", "map_axes.rst", "Reconstruction"),
    ("map_zone_axes", "map_zone_axes.rst", "Reconstruction"),
    ("alignment", "alignment.rst", "Reconstruction"),
    ("tilt_series", "tilt_series.rst", "Raw data"),
    ("model", "model.rst", "Atomic model"),
    ("strain_layers", "strain_layers.rst", "Atomic model"),
    ("radial_profile", "radial_profile.rst", "Atomic model"),
]
DATASET_FIGURES = [
    ("lattice_vs_size", "lattice_vs_size.rst", "Dataset"),
    ("runtime", "runtime.rst", "Run time"),
]


def figure_outputs(folder, figures):
    return {
        name: report(
            f"{folder}/{name}.png",
            caption=f"../report/{caption}",
            category=category,
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": name},
        )
        for name, caption, category in figures
    }


def dataset_benchmarks(wildcards):
    """The benchmark files of the dataset's jobs drawn in runtime.png (made before the figure)."""
    folder = f"{RESULTS}/{wildcards.dataset}/benchmarks"
    files = [f"{folder}/ingest.tsv"]
    for pid in particle_ids(wildcards):
        files += [f"{folder}/{step}/{pid}.tsv" for step in ("reconstruct", "trace", "lattice")]
    return files


rule figures:
    """One particle's FSC, map views, alignment, atomic model, strain layers and radial profile."""
    input:
        f"{PARTICLE}/atoms.parquet",
        f"{PARTICLE}/lattice.json",
        f"{PARTICLE}/radial_profile.csv",
        f"{PARTICLE}/fsc.csv",
        f"{PARTICLE}/map.zarr",
        f"{PARTICLE}/orientations.parquet",
        raw=f"{RESULTS}/{{dataset}}/raw.zarr",
    output:
        **figure_outputs(f"{FIGURES}/{{pid}}", PARTICLE_FIGURES),
    wildcard_constraints:
        dataset=one_of(datasets("tomography")),
    params:
        particle=lambda wildcards: particle_dir(wildcards),
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/figures/{wildcards.pid}",
    log:
        f"{LOGS}/figures/{{dataset}}/{{pid}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon figures {params.particle:q} {params.outdir:q} --raw {input.raw:q} > {log:q} 2>&1"


rule dataset_figures:
    """Lattice parameter against particle size, and run time and memory of every job."""
    input:
        f"{RESULTS}/{{dataset}}/particles.csv",
        dataset_benchmarks,
    output:
        **figure_outputs(FIGURES, DATASET_FIGURES),
    wildcard_constraints:
        dataset=one_of(datasets("tomography")),
    params:
        folder=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
    log:
        f"{LOGS}/figures/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon figures --dataset {params.folder:q} {params.folder:q}/figures > {log:q} 2>&1"


def figure_targets():
    """Every figure of the tomography datasets (their particles and the dataset figures)."""
    targets = []
    for dataset in datasets("tomography"):
        wildcards = SimpleNamespace(dataset=dataset)
        folder = f"{RESULTS}/{dataset}/figures"
        targets += [f"{folder}/{name}.png" for name, _, _ in DATASET_FIGURES]
        for pid in particle_ids(wildcards):
            targets += [f"{folder}/{pid}/{name}.png" for name, _, _ in PARTICLE_FIGURES]
    return targets
