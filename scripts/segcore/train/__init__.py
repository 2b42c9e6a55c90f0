"""Stage 5, training: data in memory and batch sampling, losses, resumable state, the loop, run facts and
training curves."""
