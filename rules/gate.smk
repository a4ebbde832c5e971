rule gate_tube:
    """Gate one FCS tube; a tube that cannot be read or gated is recorded, not fatal."""
    input:
        unpack(tube_inputs),
    output:
        f"{OUT}/.work/tubes/{{sample}}.npz",
    log:
        f"{OUT}/logs/gate_tube/{{sample}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
    params:
        options=BATCH_OPTIONS,
    shell:
        "immunoprofile gate-tube {SAMPLES} {wildcards.sample:q} -o {output:q} "
        "{params.options} 2> {log:q}"


rule profiles:
    """Count every gated tube and build each patient's profile: the tables of
    `immunoprofile gate` (populations, profiles, samples, errors, run.json)."""
    input:
        tubes=expand(f"{OUT}/.work/tubes/{{sample}}.npz", sample=REQUESTS),
        manifest=str(MANIFEST_PATH),
    output:
        populations=f"{OUT}/populations.csv",
        profiles=f"{OUT}/profiles.csv",
        samples=f"{OUT}/samples.csv",
        errors=f"{OUT}/errors.csv",
        run=f"{OUT}/run.json",
    log:
        f"{OUT}/logs/profiles.log",
    threads: 1
    resources:
        mem_mb=MEM_MB,
    params:
        options=BATCH_OPTIONS,
        tubes_dir=f"{OUT}/.work/tubes",
    shell:
        "immunoprofile tables {SAMPLES} {params.tubes_dir:q} -o {OUT:q} {params.options} "
        "2> {log:q}"
