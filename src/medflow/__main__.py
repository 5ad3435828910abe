"""`python -m medflow` runs the CLI."""

from medflow.cli import main

main()
