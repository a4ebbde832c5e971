# Configuration read once at start: the manifest decides which tubes exist.
import math
import os
import shlex
from pathlib import Path

from immunoprofile.errors import ImmunoprofileError
from immunoprofile.gating.panels import default_panels
from immunoprofile.gating.templates import (
    adaptive_template_dir,
    check_templates,
    template_dir,
    template_path,
)
from immunoprofile.io.manifest import find_manifest, read_manifest
from immunoprofile.pipeline.tube import resolve_panels
from immunoprofile.pipeline.tube_result import tube_result_key

SAMPLES = config["samples"]
OUT = os.path.normpath(config["output"])
ENGINE = config.get("engine", "compiled")
GATING = config.get("gating", "adaptive")
THREADS = int(config.get("threads", 1))
TUBES_PER_JOB = int(config.get("tubes_per_job", 1))
MEM_MB = int(config.get("mem_mb", 2000))
REPORT_THREADS = int(config.get("report_threads", 2))
TEMPLATES = config.get("templates", "")
# Folders of a lab's own panel files (immunoprofile --panels), beside the shipped panels.
PANEL_DIRS = list(config.get("panels") or [])
# Their files are inputs of every gating job: an edited panel re-gates.
PANEL_FILES = sorted(str(p) for d in PANEL_DIRS for p in Path(d).glob("*")
                     if p.suffix.lower() in (".yaml", ".yml", ".json"))
MODEL = config.get("model", "")
COHORT = config.get("cohort", "")
# With --software-deployment-method conda, every rule runs in this environment (created
# by Snakemake from the file; immunoprofile is installed by its post-deploy script).
CONDA_ENV = os.path.join(workflow.basedir, "envs", "immunoprofile.yaml")

TEMPLATE_DIR = Path(TEMPLATES) if TEMPLATES else \
    adaptive_template_dir() if GATING == "adaptive" else template_dir()

try:
    PANELS = resolve_panels(PANEL_DIRS) or default_panels()
    MANIFEST_PATH = find_manifest(SAMPLES, config.get("manifest") or None)
    MANIFEST = read_manifest(MANIFEST_PATH, SAMPLES, tuple(PANELS))
    check_templates(str(TEMPLATE_DIR), panels=PANELS)  # once for the workflow, not per tube
except ImmunoprofileError as exc:
    raise WorkflowError(f"immunoprofile: {exc}") from None

# One result file per manifest row, named by a file-name-safe key of its sample id.
TUBE_REQUESTS = {tube_result_key(r.sample_id): r for r in MANIFEST.requests}


def tube_chunks(per_job):
    """With tubes_per_job above 1, the tubes each gating job gates: those of one panel
    together (a changed template re-gates only its panel's jobs), in manifest order,
    per_job at a time. Chunk names are rule-name-safe: <panel>_<n>."""
    by_panel = {}
    for key, request in TUBE_REQUESTS.items():
        by_panel.setdefault(request.tube or "detected", []).append(key)
    return {f"{panel}_{k // per_job + 1}": keys[k:k + per_job]
            for panel, keys in by_panel.items() for k in range(0, len(keys), per_job)}

# Cluster time limits (SLURM `runtime`, minutes), from `/usr/bin/time` on the project's
# 2-core VM (2026-12-02, sample_data tubes of 25,000 events): `gate-tube` 0.4-0.6 s a tube,
# start-up included; `report` about 1.2 s a tube (plots) plus 1.5 s; `tables` 1.5 s for a
# few tubes, nearly all start-up. The limits leave a wide margin for slower nodes, larger
# tubes and shared file systems: a limit too tight kills a job that would have finished.
# A group job of N tubes asks for N × TUBE_RUNTIME (Snakemake adds up the runtimes of
# jobs run one after another), so a generous per-tube limit would add up to more than a
# partition allows.
TUBE_RUNTIME = 1
PROFILE_SECONDS = 0.05
REPORT_SECONDS = 3.0


def batch_runtime(tubes, seconds_per_tube):
    """Minutes for a step over the whole batch: 10 minutes, plus its per-tube time."""
    return 10 + math.ceil(tubes * seconds_per_tube / 60)


def batch_mem_mb(tubes):
    """MB for a step that keeps a few kilobytes per tube (profiles): 1 GB plus 1 MB per
    100 tubes."""
    return 1000 + tubes // 100


def option(flag, value):
    """A command-line option with its value shell-quoted, or nothing when unset."""
    return f"{flag} {shlex.quote(str(value))}" if value else ""


PANEL_OPTIONS = " ".join(option("--panels", d) for d in PANEL_DIRS)
GATE_OPTIONS = " ".join(filter(None, [option("--templates", TEMPLATES),
                                      option("--engine", ENGINE),
                                      option("--gating", GATING), PANEL_OPTIONS]))
BATCH_OPTIONS = " ".join(filter(None, [option("--manifest", MANIFEST_PATH), GATE_OPTIONS]))
# The report draws the gates, so it needs the templates and the gating mode, not the engine.
REPORT_OPTIONS = " ".join(filter(None, [option("--manifest", MANIFEST_PATH),
                                        option("--templates", TEMPLATES),
                                        option("--gating", GATING)]))


def tube_inputs(wildcards):
    """The FCS file and the templates this tube can use: a changed template re-gates only
    the tubes of its panel (all three templates when the manifest leaves `tube` blank).
    The manifest is not an input: its counting columns matter only to `profiles`."""
    request = TUBE_REQUESTS[wildcards.key]
    return {"fcs": str(request.path), "templates": templates_for(wildcards.key),
            "panels": PANEL_FILES}


def templates_for(key):
    """The templates one tube can use (every panel's when the manifest leaves `tube`
    blank)."""
    request = TUBE_REQUESTS[key]
    tubes = [request.tube] if request.tube else list(PANELS)
    return [str(template_path(PANELS[t], TEMPLATE_DIR)) for t in tubes]


def tube_options(wildcards):
    request = TUBE_REQUESTS[wildcards.key]
    return " ".join(filter(None, [option("--sample-id", request.sample_id),
                                  option("--tube", request.tube), GATE_OPTIONS]))


def folder_of(name):
    """A params function: the folder holding the rule's input or output called `name`."""

    def folder(wildcards, input, output):
        files = dict(input.items()) | dict(output.items())
        return os.path.dirname(str(files[name]))

    return folder


def tubes_folder(wildcards, output):
    """Where gate_tube writes its results (beside the rule's own outputs)."""
    return os.path.join(os.path.dirname(str(output.profiles)), ".work", "tubes")


wildcard_constraints:
    key=r"[A-Za-z0-9_-]+",
