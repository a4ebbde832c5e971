"""The package's version, in one place: pyproject.toml reads it from here (hatch), and the
modules that record it (run.json, kernel keys, model files, the report) import it from
here, never from the package root."""

__version__ = "0.1.0"
