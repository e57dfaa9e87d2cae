"""Benchmarks: each module runs one (``python -m bench.<name>``) and writes ``bench/results/``."""
