"""Simulators with known ground truth (every output marked synthetic)."""
