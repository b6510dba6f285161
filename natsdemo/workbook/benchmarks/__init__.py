"""Benchmark modules for ``python -m natsdemo bench NAME``: each has ``run(opts) -> list[Figure]``."""
