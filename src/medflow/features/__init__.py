"""Featurizers: one module per modality, each fitted on training records only."""
