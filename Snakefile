# immunoprofile workflow: gate each tube (one job per FCS file; on a cluster, groups of them)
# -> every patient's profile -> TFR risk -> cohort statistics (when a cohort CSV is
# configured) -> HTML report.
#
#   snakemake --cores 4                                  # config/config.yaml
#   snakemake --cores 4 --config samples=my_tubes output=my_results
#   snakemake --profile profiles/slurm                   # SLURM jobs of 20 tubes each
#
# The rules only call the `immunoprofile` command; all logic lives in the package.

import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


validate(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))


# On a cluster these steps run where snakemake runs: each takes seconds, less than a
# cluster job waits to be scheduled and polled.
localrules:
    predict,
    cohort_stats,
    batch_ok,


include: "rules/common.smk"
include: "rules/gate.smk"
include: "rules/downstream.smk"


rule all:
    input:
        f"{OUT}/report.html",
        f"{OUT}/.work/batch_ok",
    default_target: True


onsuccess:
    # A run with failed tubes ends on one line naming them and errors.csv (batch_ok wrote
    # it; the reasons are in errors.csv and logs/batch_ok.log), exit status 1, no
    # traceback. The line is removed once said, so a rerun says it again.
    summary = os.path.join(OUT, ".work", "batch_ok")
    if os.path.isfile(summary) and os.path.getsize(summary):
        with open(summary, encoding="utf-8") as handle:
            print(f"immunoprofile: {handle.read().strip()}", file=sys.stderr)
        os.remove(summary)
        sys.exit(1)
