"""Hostile-input suite: one file per class of failure, every backend."""
