# Brownian movies: track the particles, cut one stack per particle, then refine every particle
# (ab initio orientations, projection matching, half maps, FSC) as one dask task each.


rule track:
    """Movie → particle tracks (detection, linking, cuts at overlaps and field exits) and drift."""
    input:
        raw=f"{RESULTS}/{{dataset}}/raw.zarr",
    output:
        tracks=f"{RESULTS}/{{dataset}}/tracks.parquet",
        csv=f"{RESULTS}/{{dataset}}/tracks.csv",
        drift=f"{RESULTS}/{{dataset}}/drift.csv",
    wildcard_constraints:
        dataset=one_of(datasets("brownian")),
    params:
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
        diameter=config["brownian"]["particle_diameter_A"],
        max_gap=config["brownian"]["max_gap_frames"],
    log:
        f"{LOGS}/track/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/track.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon track {input.raw:q} {params.outdir:q} --particle-diameter-A {params.diameter} "
        "--max-gap {params.max_gap} --no-progress > {log:q} 2>&1"


rule extract:
    """Tracks → one phase-flipped, quality-scored stack per particle (particles/pNNN/) and their list."""
    input:
        raw=f"{RESULTS}/{{dataset}}/raw.zarr",
        tracks=f"{RESULTS}/{{dataset}}/tracks.parquet",
    output:
        f"{RESULTS}/{{dataset}}/particles.tsv",
    wildcard_constraints:
        dataset=one_of(datasets("brownian")),
    params:
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
        box=config["brownian"]["box_px"],
        diameter=config["brownian"]["particle_diameter_A"],
    log:
        f"{LOGS}/extract/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/extract.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon extract {input.raw:q} {input.tracks:q} {params.outdir:q} --box {params.box} "
        "--particle-diameter-A {params.diameter} --no-progress > {log:q} 2>&1"


checkpoint refine_particles:
    """Every particle stack → ab initio and refined orientations, map, half maps, FSC (dask tasks).

    A checkpoint: the particles that refined (status ok in refinement.tsv) are the ones traced."""
    input:
        unpack(refine_particles_inputs),
    output:
        f"{RESULTS}/{{dataset}}/refinement.tsv",
    wildcard_constraints:
        dataset=one_of(datasets("brownian")),
    params:
        dataset=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
        truth=lambda wildcards, input: f"--truth {shlex.quote(input.truth)}" if "truth" in input.keys() else "",
        dask=lambda wildcards, threads, resources: dask_options(threads, resources),
        diameter=config["brownian"]["support_diameter_A"],
        search=config["brownian"]["search_iterations"],
        grid=config["brownian"]["grid"],
        band=" ".join(str(v) for v in config["brownian"]["search_band_A"]),
        starts=config["brownian"]["starts"],
        abinitio=brownian_abinitio_options(),
        refinement=config["brownian"]["refinement"],
        joint=config["brownian"]["joint_resolution_A"] or 0,
        research="" if config["brownian"]["wide_research"] else "--no-wide-research",
        high_resolution=config["brownian"]["high_resolution_rounds"],
        late_research="" if config["brownian"]["late_research"] else "--no-late-research",
        particle_mask="" if config["brownian"]["particle_mask"] else "--no-particle-mask",
        choose_by=config["brownian"]["choose_by"],
        refine_starts=config["brownian"]["refine_starts"],
        structure=config["lattice"]["structure"],
        rounds=config["brownian"]["rounds"],
        iterations=config["brownian"]["iterations"],
        seed=config["brownian"]["seed"],
        min_frames=config["brownian"]["min_frames"],
        max_resolution=config["brownian"]["max_resolution_A"],
        min_agreeing=config["brownian"]["min_agreeing_starts"],
        prior="" if config["brownian"]["prior"] else "--no-prior",
        # the device follows the GPU request, so a profile that grants a GPU (profiles/slurm) uses it
        device=lambda wildcards, resources: "gpu" if resources.gpu > 0 else "cpu",
    log:
        f"{LOGS}/refine_particles/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/refine_particles.tsv"
    threads: dask_threads()
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=1 if config["reconstruct"]["device"] == "gpu" else 0,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon refine-particles {params.dataset:q} {params.truth} {params.dask} "
        "--device {params.device} --particle-diameter-A {params.diameter} --starts {params.starts} "
        "{params.abinitio} "
        "--search-iterations {params.search} --grid {params.grid} --search-band-A {params.band} "
        "--refinement {params.refinement} --joint-resolution-A {params.joint} {params.research} "
        "--high-resolution-rounds {params.high_resolution} {params.late_research} "
        "{params.particle_mask} "
        "--choose-by {params.choose_by} --refine-starts {params.refine_starts} "
        "--structure {params.structure} "
        "--rounds {params.rounds} "
        "--iterations {params.iterations} --seed {params.seed} "
        "--min-frames {params.min_frames} --max-resolution-A {params.max_resolution} "
        "--min-agreeing-starts {params.min_agreeing} "
        "{params.prior} --no-progress > {log:q} 2>&1"
