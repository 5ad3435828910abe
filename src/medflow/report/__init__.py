"""The HTML model card, written from a run directory."""
