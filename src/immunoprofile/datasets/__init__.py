"""SIMULATED data: the tube simulator (:mod:`.simulate`), a simulated tube as an FCS file
with its truth (:mod:`.tube_files`), the simulated cohort of ``sample_data/``
(:mod:`.cohort`), the layout envelope (:mod:`.envelope`), and the scoring of a gated
simulated batch against its truth (:mod:`.evaluation`). The top of the package
below the command line: it may use every stage, and no stage uses it."""
