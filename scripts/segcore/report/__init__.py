"""Stage 7, the report: the self-contained HTML report of every experiment."""
