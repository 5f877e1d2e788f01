"""Performance suite of yukkuri_nb against baselines, run in one process.

``python -m benchmarks`` runs workloads A-H (see ``benchmarks/README.md``),
writes ``benchmarks/results/latest.json`` and ``latest.md`` and prints the
table; ``--quick`` is the smoke mode CI uses (tiny sizes, one run, no targets).
"""
