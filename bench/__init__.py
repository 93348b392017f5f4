"""Benchmarks (run as modules: python -m bench.compare_modes)."""
