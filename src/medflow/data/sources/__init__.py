"""Readers that turn files into Datasets."""
