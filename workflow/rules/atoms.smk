# Atoms, lattice and strain of every particle map; validation against the simulator's truth.


def projection_inputs(wildcards):
    """Tilt series: the aligned stack and orientations that the traced positions are refined against."""
    if sample(wildcards.dataset).modality != "tomography":
        return {}
    folder = particle_dir(wildcards)
    return {"stack": f"{folder}/stack.zarr", "orientations": f"{folder}/orientations.parquet"}


def refine_option(wildcards, input):
    if "stack" not in input.keys():
        return ""
    return f"--stack {shlex.quote(input.stack)} --orientations {shlex.quote(input.orientations)}"


rule trace:
    """Map → atom positions (sub-voxel fits, then refined against the HAADF projections), species."""
    input:
        unpack(projection_inputs),
        # tomography: the particle's map.zarr; Brownian: the refinement table that wrote it
        map=particle_map_input,
    output:
        atoms=f"{PARTICLE}/traced/atoms.parquet",
        model=f"{PARTICLE}/traced/model.xyz",
    params:
        map=lambda wildcards: f"{particle_dir(wildcards)}/map.zarr",
        outdir=lambda wildcards: f"{particle_dir(wildcards)}/traced",
        elements=lambda wildcards: sample(wildcards.dataset).elements,
        refine=refine_option,
    log:
        f"{LOGS}/trace/{{dataset}}/{{pid}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/trace/{{pid}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon trace {params.map:q} {params.outdir:q} --elements {params.elements:q} "
        "{params.refine} > {log:q} 2>&1"


rule lattice:
    """Atoms → lattice fit, Miller indices, displacements, strain tensors, radial profile, models."""
    input:
        atoms=f"{PARTICLE}/traced/atoms.parquet",
    output:
        atoms=f"{PARTICLE}/atoms.parquet",
        csv=f"{PARTICLE}/atoms.csv",
        lattice=f"{PARTICLE}/lattice.json",
        profile=f"{PARTICLE}/radial_profile.csv",
        models=multiext(f"{PARTICLE}/model", ".xyz", ".cif", ".pdb"),
    params:
        outdir=lambda wildcards: particle_dir(wildcards),
        structure=config["lattice"]["structure"],
        strain=(
            f"--strain-sigma-A {config['lattice']['strain_sigma_A']}"
            if config["lattice"].get("strain_sigma_A")
            else ""
        ),
    log:
        f"{LOGS}/lattice/{{dataset}}/{{pid}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/lattice/{{pid}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon lattice {input.atoms:q} {params.outdir:q} --structure {params.structure} "
        "{params.strain} > {log:q} 2>&1"


rule validate_particle:
    """Traced model vs the simulator's true atoms: recall, precision, errors in pm, strain RMSE."""
    input:
        atoms=f"{PARTICLE}/atoms.parquet",
        truth=truth_dir,
    output:
        f"{PARTICLE}/validation.csv",
    params:
        # a Brownian track is scored against the true particle its refinement matched it to
        matched=matched_particle,
    log:
        f"{LOGS}/validate/{{dataset}}/{{pid}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/validate/{{pid}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon validate {input.atoms:q} {input.truth:q}/atoms.csv {output:q} {params.matched} "
        "> {log:q} 2>&1"


rule summarize:
    """One row per particle: size, atom counts, lattice parameter, strain, FSC, precision."""
    input:
        particle_outputs,
        refinement_table,
    output:
        csv=f"{RESULTS}/{{dataset}}/particles.csv",
        parquet=f"{RESULTS}/{{dataset}}/particles.parquet",
    wildcard_constraints:
        dataset=one_of(datasets(with_truth=False)),
    params:
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
        particles=particle_dirs,
        refinement=refinement_option,
    log:
        f"{LOGS}/summarize/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon summarize {params.outdir:q} {params.particles} {params.refinement} "
        "--dataset {wildcards.dataset:q} > {log:q} 2>&1"


rule summarize_with_truth:
    """The particles table, and the validation table of a simulated dataset."""
    input:
        particle_outputs,
        refinement_table,
    output:
        csv=f"{RESULTS}/{{dataset}}/particles.csv",
        parquet=f"{RESULTS}/{{dataset}}/particles.parquet",
        validation=f"{RESULTS}/{{dataset}}/validation.csv",
    wildcard_constraints:
        dataset=one_of(datasets(with_truth=True)),
    params:
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
        particles=particle_dirs,
        refinement=refinement_option,
    log:
        f"{LOGS}/summarize/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon summarize {params.outdir:q} {params.particles} {params.refinement} "
        "--dataset {wildcards.dataset:q} --validation-csv {output.validation:q} > {log:q} 2>&1"
