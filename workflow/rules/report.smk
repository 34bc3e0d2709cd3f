# Figures of every particle and dataset, annotated for `snakemake --report report.html`.

from types import SimpleNamespace

FIGURES = f"{RESULTS}/{{dataset}}/figures"
# (figure, caption, report category) of one particle; `nanorecon figures` names the PNGs so
PARTICLE_FIGURES = [
    ("fsc", "fsc.rst", "Reconstruction"),
    ("map_axes", "map_axes.rst", "Reconstruction"),
    ("map_zone_axes", "map_zone_axes.rst", "Reconstruction"),
    ("alignment", "alignment.rst", "Reconstruction"),
    ("orientation_coverage", "orientation_coverage.rst", "Reconstruction"),
    ("tilt_series", "tilt_series.rst", "Raw data"),
    ("model", "model.rst", "Atomic model"),
    ("strain_layers", "strain_layers.rst", "Atomic model"),
    ("radial_profile", "radial_profile.rst", "Atomic model"),
]
DATASET_FIGURES = [
    ("lattice_vs_size", "lattice_vs_size.rst", "Dataset"),
    ("runtime", "runtime.rst", "Run time"),
]
MOVIE_FIGURES = [("tracks", "tracks.rst", "Raw data")]
# figures of one modality only; the others are drawn for both
MODALITY_ONLY = {"tomography": {"alignment", "tilt_series"}, "brownian": {"orientation_coverage"}}


# figures of a Brownian particle's refinement: drawn for every refined particle, traced or not
REFINEMENT_FIGURES = {"fsc", "map_axes", "orientation_coverage"}


def figures_for(modality, figures=PARTICLE_FIGURES):
    other = set().union(*(names for m, names in MODALITY_ONLY.items() if m != modality))
    return [figure for figure in figures if figure[0] not in other]


def brownian_figures(*, traced):
    """A Brownian particle's refinement figures, or (traced) those of its atoms."""
    return [f for f in figures_for("brownian") if (f[0] in REFINEMENT_FIGURES) != traced]


def refined_particle_ids(dataset):
    """Brownian particles with a map (refined, whether or not fine enough to trace)."""
    table = checkpoints.refine_particles.get(dataset=dataset).output[0]
    refined = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    return sorted(refined.loc[refined.resolution_A != "", "particle"])


def figure_names(figures):
    return ",".join(name for name, _, _ in figures)


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
    steps = ["trace", "lattice"]
    if is_brownian(wildcards.dataset):
        files += [f"{folder}/{step}.tsv" for step in ("track", "extract", "refine_particles")]
    else:
        steps.insert(0, "reconstruct")
    for pid in particle_ids(wildcards):
        files += [f"{folder}/{step}/{pid}.tsv" for step in steps]
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
        **figure_outputs(f"{FIGURES}/{{pid}}", figures_for("tomography")),
    wildcard_constraints:
        dataset=one_of(datasets("tomography")),
    params:
        particle=lambda wildcards: particle_dir(wildcards),
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/figures/{wildcards.pid}",
        names=figure_names(figures_for("tomography")),
    log:
        f"{LOGS}/figures/{{dataset}}/{{pid}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon figures {params.particle:q} {params.outdir:q} --raw {input.raw:q} "
        "--only {params.names} > {log:q} 2>&1"


rule refinement_figures:
    """One Brownian particle's FSC, map views and orientation coverage (every refined particle)."""
    input:
        # map, FSC and orientations come from the dataset's refine_particles checkpoint
        f"{RESULTS}/{{dataset}}/refinement.tsv",
    output:
        **figure_outputs(f"{FIGURES}/{{pid}}", brownian_figures(traced=False)),
    wildcard_constraints:
        dataset=one_of(datasets("brownian")),
    params:
        particle=lambda wildcards: particle_dir(wildcards),
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/figures/{wildcards.pid}",
        names=figure_names(brownian_figures(traced=False)),
    log:
        f"{LOGS}/figures/{{dataset}}/{{pid}}_refinement.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon figures {params.particle:q} {params.outdir:q} --only {params.names} "
        "> {log:q} 2>&1"


rule brownian_atom_figures:
    """One traced Brownian particle's zone-axis views, atomic model, strain layers and profile."""
    input:
        f"{PARTICLE}/atoms.parquet",
        f"{PARTICLE}/lattice.json",
        f"{PARTICLE}/radial_profile.csv",
        f"{RESULTS}/{{dataset}}/refinement.tsv",
    output:
        **figure_outputs(f"{FIGURES}/{{pid}}", brownian_figures(traced=True)),
    wildcard_constraints:
        dataset=one_of(datasets("brownian")),
    params:
        particle=lambda wildcards: particle_dir(wildcards),
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/figures/{wildcards.pid}",
        names=figure_names(brownian_figures(traced=True)),
    log:
        f"{LOGS}/figures/{{dataset}}/{{pid}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon figures {params.particle:q} {params.outdir:q} --only {params.names} "
        "> {log:q} 2>&1"


rule track_figure:
    """The particle tracks of a movie over the frame where most particles are tracked."""
    input:
        f"{RESULTS}/{{dataset}}/tracks.parquet",
        f"{RESULTS}/{{dataset}}/raw.zarr",
    output:
        **figure_outputs(FIGURES, MOVIE_FIGURES),
    wildcard_constraints:
        dataset=one_of(datasets("brownian")),
    params:
        folder=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
    log:
        f"{LOGS}/figures/{{dataset}}_tracks.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon figures --dataset {params.folder:q} {params.folder:q}/figures --only tracks "
        "> {log:q} 2>&1"


rule dataset_figures:
    """Lattice parameter against particle size, and run time and memory of every job."""
    input:
        f"{RESULTS}/{{dataset}}/particles.csv",
        dataset_benchmarks,
    output:
        **figure_outputs(FIGURES, DATASET_FIGURES),
    params:
        folder=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
        names=figure_names(DATASET_FIGURES),
    log:
        f"{LOGS}/figures/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon figures --dataset {params.folder:q} {params.folder:q}/figures "
        "--only {params.names} > {log:q} 2>&1"


def particle_figure_targets(dataset):
    """The dataset figures and every traced particle's figures (Brownian: after the checkpoint)."""
    modality = sample(dataset).modality
    folder = f"{RESULTS}/{dataset}/figures"
    targets = [f"{folder}/{name}.png" for name, _, _ in DATASET_FIGURES]
    traced = figures_for(modality) if modality == "tomography" else brownian_figures(traced=True)
    for pid in particle_ids(SimpleNamespace(dataset=dataset)):
        targets += [f"{folder}/{pid}/{name}.png" for name, _, _ in traced]
    return targets


def refinement_figure_targets(wildcards):
    """Every refined Brownian particle's refinement figures (known after the checkpoint)."""
    targets = []
    for dataset in datasets("brownian"):
        folder = f"{RESULTS}/{dataset}/figures"
        for pid in refined_particle_ids(dataset):
            targets += [f"{folder}/{pid}/{name}.png" for name, _, _ in brownian_figures(traced=False)]
    return targets


def figure_targets():
    """Figures known before any checkpoint: tomography datasets' and the movies' track figures."""
    targets = []
    for dataset in datasets("tomography"):
        targets += particle_figure_targets(dataset)
    for dataset in datasets("brownian"):
        targets += [f"{RESULTS}/{dataset}/figures/{name}.png" for name, _, _ in MOVIE_FIGURES]
    return targets
