"""The tubes of the study's immune profile, by the names a manifest's ``tube`` column, the
command line's ``--tube`` and the panels (:data:`immunoprofile.gating.panels.PANELS`) use.
Importing this module costs nothing (the command line reads it at start-up)."""

#: The NK (CD3/CD16+56/CD45), CD4 (CD3/CD4/CD45) and CD8 (CD3/CD8/CD45) tubes.
TUBES = ("nk", "cd4", "cd8")
