"""Stage 2, the plan: the dataset fingerprint, the per-experiment plan derived from it and the config (the one
writer and reader of fingerprint.json and plan.json), and image normalisation."""
