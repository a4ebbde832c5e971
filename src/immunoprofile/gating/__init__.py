"""Gating: Gating-ML templates, channel mapping, and gating tubes with FlowKit."""
