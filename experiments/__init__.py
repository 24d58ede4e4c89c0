"""Experiment configs, launchers and the studies (book report, theory experiments, benchmarks)."""
