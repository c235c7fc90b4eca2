"""Canary analysis: what the rollout measures, its thresholds and its decision (shared by both backends)."""
