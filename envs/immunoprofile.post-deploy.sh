#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment: install immunoprofile from the
# checkout this workflow lives in (two levels above this script), without touching the
# dependencies conda installed.
set -euo pipefail
python -m pip install --no-deps "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
