"""Sweeps: every variant x seed of an ablation trained, evaluated and summarised with spread
(`python -m mmjax.sweep`, sweep files in configs/sweeps/)."""
