"""SIMULATED data: the tube simulator with its truth (:mod:`.simulate`) and the scoring of a
gated simulated batch against that truth (:mod:`.evaluation`). The top of the package
below the command line: it may use every stage, and no stage uses it."""
