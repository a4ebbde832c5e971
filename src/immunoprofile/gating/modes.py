"""The names a user chooses gating by, once (the command line, the workflow's config and
the Python API all check against these; importing this module costs nothing)."""

#: Who gates: the compiled Numba engine, or FlowKit (the reference).
ENGINES = ("compiled", "flowkit")

#: Where the gates go: placed from each tube's own events, or the templates' fixed positions.
GATING_MODES = ("adaptive", "fixed")
