"""Stage 7, evaluation: per-image and pooled metrics, object metrics, and the metric tables (writer,
reader, merge)."""
