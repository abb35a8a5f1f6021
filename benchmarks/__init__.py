"""What wavelist costs and how well it does, measured: each module runs as ``python -m benchmarks.NAME`` from the
repository's root (``--help`` says how); the figures and the commands that made them are in ``RESULTS.md``."""
