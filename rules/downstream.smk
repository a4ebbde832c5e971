rule predict:
    """P(TFR grade >= 2) per patient with the configured (or shipped) model."""
    input:
        profiles=f"{OUT}/profiles.csv",
        model=MODEL or [],
        cohort=COHORT or [],
    output:
        f"{OUT}/predictions.csv",
    log:
        f"{OUT}/logs/predict.log",
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
    params:
        model=option("--model", MODEL),
        cohort=option("--cohort", COHORT),
    shell:
        "immunoprofile predict {input.profiles:q} {params.model} {params.cohort} "
        "--allow-missing -o {output:q} 2> {log:q}"


rule cohort_stats:
    """The study's statistics on the configured cohort, with this batch's profiles."""
    input:
        cohort=COHORT or [],
        profiles=f"{OUT}/profiles.csv",
    output:
        f"{OUT}/cohort_stats/cohort_stats.md",
    log:
        f"{OUT}/logs/cohort_stats.log",
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
    params:
        folder=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "immunoprofile cohort-stats {input.cohort:q} --profiles {input.profiles:q} "
        "-o {params.folder:q} 2> {log:q}"


rule report:
    """A self-contained HTML report of the batch (beyond 50 patients, paged into
    report_pages/ beside it, which the rule does not declare: its pages follow the batch)."""
    input:
        profiles=f"{OUT}/profiles.csv",
        predictions=f"{OUT}/predictions.csv",
        stats=[f"{OUT}/cohort_stats/cohort_stats.md"] if COHORT else [],
    output:
        f"{OUT}/report.html",
    log:
        f"{OUT}/logs/report.log",
    # processes drawing a paged report's pages (Snakemake caps it at --cores)
    threads: REPORT_THREADS
    conda:
        CONDA_ENV
    resources:
        # a tube's events per process, as a gating job holds them, where plots may be
        # drawn from the FCS files (fixed gating, or a lab's templates, which need not
        # adapt); from the views the shipped adaptive templates binned, one
        mem_mb=lambda wildcards, threads: MEM_MB * (
            threads if GATING == "fixed" or TEMPLATES else 1),
        runtime=lambda wildcards: batch_runtime(len(TUBE_REQUESTS), REPORT_SECONDS),
    params:
        samples=lambda wildcards: SAMPLES,
        out=folder_of("profiles"),
        options=REPORT_OPTIONS,
        stats=(lambda wildcards, input: option("--cohort-stats",
                                               os.path.dirname(str(input.stats[0]))))
        if COHORT else "--no-cohort-stats",
    shell:
        # Exit 1: written, but some tubes' plots are missing (the page and the log say which).
        "immunoprofile report {params.out:q} --samples {params.samples:q} {params.options} "
        "{params.stats} -j {threads} 2> {log:q} || [ $? -eq 1 ]"


rule batch_ok:
    """Last: list the failed tubes (errors.csv) in the log and write their one-line summary
    (empty when none failed); every other result, the report included, is already written.
    The Snakefile's onsuccess hook then ends a run with failures on that line, exit 1."""
    input:
        errors=f"{OUT}/errors.csv",
        report=f"{OUT}/report.html",
    output:
        f"{OUT}/.work/batch_ok",
    log:
        f"{OUT}/logs/batch_ok.log",
    retries: 0
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=200,
    shell:
        "immunoprofile check-errors {input.errors:q} --summary {output:q} 2> {log:q}"
