# Tomography: align and refine the tilt series, reconstruct the map, half maps and FSC (one particle).


rule reconstruct:
    """Tilt series → particle stack, refined orientations, map and half maps, gold-standard FSC."""
    input:
        unpack(reconstruct_inputs),
    output:
        stack=directory(f"{PARTICLE}/stack.zarr"),
        map=directory(f"{PARTICLE}/map.zarr"),
        mrc=f"{PARTICLE}/map.mrc",
        fsc=f"{PARTICLE}/fsc.csv",
        orientations=f"{PARTICLE}/orientations.parquet",
    wildcard_constraints:
        dataset=one_of(datasets("tomography")),
    params:
        outdir=lambda wildcards: particle_dir(wildcards),
        truth=lambda wildcards, input: f"--truth {shlex.quote(input.truth)}" if "truth" in input.keys() else "",
        iterations=config["reconstruct"]["iterations"],
        rounds=config["reconstruct"]["rounds"],
        # the device follows the GPU request, so a profile that grants a GPU (profiles/slurm) uses it
        device=lambda wildcards, resources: "gpu" if resources.gpu > 0 else "cpu",
    log:
        f"{LOGS}/reconstruct/{{dataset}}/{{pid}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/reconstruct/{{pid}}.tsv"
    threads: config["reconstruct"]["threads"]
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=1 if config["reconstruct"]["device"] == "gpu" else 0,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon reconstruct {input.raw:q} {params.outdir:q} {params.truth} "
        "--iterations {params.iterations} --rounds {params.rounds} --device {params.device} "
        "--threads {threads} --no-progress > {log:q} 2>&1"
