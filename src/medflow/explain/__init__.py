"""Explanations: attributions per record and global importance."""
