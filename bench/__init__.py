"""graphdl's benchmarks: ``python -m bench`` runs them all and prints Markdown tables of medians."""
