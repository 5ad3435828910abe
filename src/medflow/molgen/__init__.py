"""Molecule generation: a SMILES language model trained on a molecule set (`generator`), metrics of what it
generates (`metrics`), runs with reports, sampling and steering toward a property another run predicts (`run`)."""

from medflow.molgen.generator import GeneratorConfig, MoleculeGenerator, smiles_tokens
from medflow.molgen.metrics import generation_metrics
from medflow.molgen.run import GenerateConfig, SteerConfig, load_generator, sample_molecules, steer, train_generator

__all__ = ["GeneratorConfig", "MoleculeGenerator", "smiles_tokens", "generation_metrics", "GenerateConfig",
           "SteerConfig", "load_generator", "sample_molecules", "steer", "train_generator"]
