"""Benchmarks: one command each, side-by-side ratios, figures written under results/benchmarks/."""
