"""Classical baselines (placeholder module filled in by the evaluation work)."""
