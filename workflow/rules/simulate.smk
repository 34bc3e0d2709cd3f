# Synthetic datasets with ground truth (config key `simulate`), written as a microscope would write them.


def simulation_spec(wildcards):
    return json.dumps(config["simulate"][wildcards.sim].get("spec", {}), sort_keys=True)


rule simulate_tomography:
    """HAADF tilt series of a simulated particle, its .rawtlt file and the ground truth."""
    output:
        stack=f"{SIMULATED}/{{sim}}/tilt_series.mrc",
        tilts=f"{SIMULATED}/{{sim}}/tilt_series.rawtlt",
        sheet=f"{SIMULATED}/{{sim}}/samples.tsv",
        truth=directory(f"{SIMULATED}/{{sim}}/truth"),
    wildcard_constraints:
        sim=one_of(simulations("tomography")),
    params:
        spec=simulation_spec,
        outdir=lambda wildcards: f"{SIMULATED}/{wildcards.sim}",
    log:
        f"{LOGS}/simulate/{{sim}}.log",
    benchmark:
        f"{LOGS}/simulate/{{sim}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon simulate tomography {params.outdir:q} --dataset {wildcards.sim:q} "
        "--spec-json {params.spec:q} > {log:q} 2>&1"


rule simulate_brownian:
    """Liquid-cell HRTEM movie of several tumbling particles and the ground truth."""
    output:
        movie=f"{SIMULATED}/{{sim}}/movie.mrc",
        sheet=f"{SIMULATED}/{{sim}}/samples.tsv",
        truth=directory(f"{SIMULATED}/{{sim}}/truth"),
    wildcard_constraints:
        sim=one_of(simulations("brownian")),
    params:
        spec=simulation_spec,
        outdir=lambda wildcards: f"{SIMULATED}/{wildcards.sim}",
    log:
        f"{LOGS}/simulate/{{sim}}.log",
    benchmark:
        f"{LOGS}/simulate/{{sim}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon simulate brownian {params.outdir:q} --dataset {wildcards.sim:q} "
        "--spec-json {params.spec:q} > {log:q} 2>&1"
