if TUBES_PER_JOB == 1:

    rule gate_tube:
        """Gate one FCS tube; a tube that cannot be read or gated is recorded, not fatal.

        On a cluster, tubes are gated in groups ("gate"): the SLURM profile's
        `group-components: gate=N` puts N tubes in one cluster job, one after another
        (locally, groups are ignored)."""
        input:
            unpack(tube_inputs),
        output:
            f"{OUT}/.work/tubes/{{key}}.npz",
        log:
            f"{OUT}/logs/gate_tube/{{key}}.log",
        group:
            "gate"
        threads: THREADS
        conda:
            CONDA_ENV
        resources:
            mem_mb=MEM_MB,
            # minutes: a tube takes about a second; a group job adds its tubes' runtimes
            runtime=TUBE_RUNTIME,
        params:
            options=tube_options,
        shell:
            # Exit 1 is a tube that cannot be read or gated: recorded in its result, not fatal.
            "immunoprofile gate-tube {input.fcs:q} {params.options} -o {output:q} 2> {log:q} "
            "|| [ $? -eq 1 ]"


else:
    # tubes_per_job > 1: one job gates a chunk of tubes in one process (one interpreter
    # start instead of one per tube, and one job for Snakemake to schedule: the workflow's
    # limit for thousands of tubes). Each tube keeps its own result file.
    for chunk, keys in tube_chunks(TUBES_PER_JOB).items():
        results = [f"{OUT}/.work/tubes/{k}.npz" for k in keys]

        rule:
            name:
                f"gate_tubes_{chunk}"
            input:
                fcs=[str(TUBE_REQUESTS[k].path) for k in keys],
                templates=sorted({t for k in keys for t in templates_for(k)}),
                panels=PANEL_FILES,
            output:
                results,
            log:
                f"{OUT}/logs/gate_tubes/{chunk}.log",
            group:
                "gate"
            threads: THREADS
            conda:
                CONDA_ENV
            resources:
                mem_mb=MEM_MB,
                runtime=TUBE_RUNTIME * len(keys),
            params:
                tubes=" ".join(
                    "--item " + " ".join(shlex.quote(str(v)) for v in (
                        TUBE_REQUESTS[k].path, TUBE_REQUESTS[k].sample_id,
                        TUBE_REQUESTS[k].tube or "-", result))
                    for k, result in zip(keys, results)),
                options=GATE_OPTIONS,
            shell:
                # Exit 1: some tubes could not be read or gated; recorded, not fatal.
                "immunoprofile gate-tubes {params.tubes} {params.options} 2> {log:q} "
                "|| [ $? -eq 1 ]"


rule profiles:
    """Count every gated tube and build each patient's profile: the tables of
    `immunoprofile gate` (populations, profiles, samples, errors, run.json)."""
    input:
        tubes=expand(f"{OUT}/.work/tubes/{{key}}.npz", key=TUBE_REQUESTS),
        manifest=str(MANIFEST_PATH),
    output:
        populations=f"{OUT}/populations.csv",
        profiles=f"{OUT}/profiles.csv",
        samples=f"{OUT}/samples.csv",
        errors=f"{OUT}/errors.csv",
        gates=f"{OUT}/gates.csv",
        run=f"{OUT}/run.json",
    log:
        f"{OUT}/logs/profiles.log",
    threads: 1
    conda:
        CONDA_ENV
    resources:
        # reads each tube's counts (kilobytes), never its events
        mem_mb=lambda wildcards, input: batch_mem_mb(len(input.tubes)),
        runtime=lambda wildcards, input: batch_runtime(len(input.tubes), PROFILE_SECONDS),
    params:
        # The samples folder is read in place (a shared file system), as by gate_tube;
        # `tables` needs it to report FCS files the manifest does not list.
        samples=lambda wildcards: SAMPLES,
        out=folder_of("profiles"),
        options=BATCH_OPTIONS,
        tubes_dir=tubes_folder,
    shell:
        "immunoprofile tables {params.samples:q} {params.tubes_dir:q} -o {params.out:q} "
        "{params.options} 2> {log:q}"
