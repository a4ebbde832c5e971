# Configuration read once at start: the manifest decides which tubes exist.
import os
from pathlib import Path

from immunoprofile.errors import ImmunoprofileError
from immunoprofile.gating.templates import template_dir
from immunoprofile.io.manifest import TUBES, find_manifest, read_manifest

SAMPLES = config["samples"]
OUT = config["output"].rstrip("/")
ENGINE = config.get("engine", "compiled")
THREADS = int(config.get("threads", 1))
MEM_MB = int(config.get("mem_mb", 2000))
TEMPLATES = config.get("templates", "")
MODEL = config.get("model", "")
COHORT = config.get("cohort", "")
# With --software-deployment-method conda, every rule runs in this environment (created
# by Snakemake from the file; immunoprofile is installed by its post-deploy script).
CONDA_ENV = os.path.join(workflow.basedir, "envs", "immunoprofile.yaml")

try:
    MANIFEST_PATH = find_manifest(SAMPLES, config.get("manifest") or None)
    MANIFEST = read_manifest(MANIFEST_PATH, SAMPLES)
except ImmunoprofileError as exc:
    raise WorkflowError(f"immunoprofile: {exc}") from None

REQUESTS = {r.sample_id: r for r in MANIFEST.requests}
TEMPLATE_DIR = Path(TEMPLATES) if TEMPLATES else template_dir()

# Options passed on to every immunoprofile command that reads the batch.
BATCH_OPTIONS = " ".join(
    [f"--manifest {MANIFEST_PATH}"]
    + ([f"--templates {TEMPLATES}"] if TEMPLATES else [])
    + [f"--engine {ENGINE}"]
)


def tube_inputs(wildcards):
    """The FCS file, the manifest and the templates this tube can use: a changed template
    re-gates only the tubes of its panel (all three when the manifest leaves `tube` blank)."""
    request = REQUESTS[wildcards.sample]
    tubes = [request.tube] if request.tube else list(TUBES)
    return {
        "fcs": str(request.path),
        "manifest": str(MANIFEST_PATH),
        "templates": [str(TEMPLATE_DIR / f"{t}_tube.xml") for t in tubes],
    }


def tubes_folder(wildcards, input):
    """The folder of the tube result files, from the first one (lint: no hard-coded prefix)."""
    first = str(input.tubes[0])
    return first[: -(len(next(iter(REQUESTS))) + len(".npz") + 1)]


def folder_of(name):
    """A params function: the folder holding the rule's input or output called `name`."""

    def folder(wildcards, input, output):
        files = dict(input.items()) | dict(output.items())
        return os.path.dirname(str(files[name]))

    return folder


wildcard_constraints:
    sample="|".join(__import__("re").escape(s) for s in REQUESTS) or "NONE",
