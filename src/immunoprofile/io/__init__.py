"""Input and output: FCS tubes, manifests, atomic writes."""
