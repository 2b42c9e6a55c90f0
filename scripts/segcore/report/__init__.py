"""Stage 8, the report: the self-contained HTML report of every experiment."""
