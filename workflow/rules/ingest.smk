rule ingest:
    """Stream a raw movie or tilt series into a chunked, compressed Zarr store with its metadata."""
    input:
        unpack(raw_inputs),
    output:
        directory(f"{RESULTS}/{{dataset}}/raw.zarr"),
    params:
        sheet=str(SHEET),
        chunk_mb=config["ingest"]["chunk_mb"],
    log:
        f"{LOGS}/ingest/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/ingest.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/nanorecon.yaml"
    shell:
        "nanorecon ingest {params.sheet:q} {wildcards.dataset:q} {output:q} "
        "--chunk-mb {params.chunk_mb} --no-progress > {log:q} 2>&1"
