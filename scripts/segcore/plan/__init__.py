"""Dataset fingerprint, experiment plan and image normalisation (stage plan: after data, before augment)."""
