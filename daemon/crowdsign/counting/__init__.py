"""Counting: a TFLite model turns a frame into counts per zone, and nothing else."""
