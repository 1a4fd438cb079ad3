"""Datasets: generated tasks, hub ids and local files through one loader."""
