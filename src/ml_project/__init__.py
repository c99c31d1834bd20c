"""ml_project: a DVC-versioned experiment pipeline (etl -> train -> evaluate -> export).

Import the pieces you need, e.g. `from ml_project.training import fit`; this package itself
imports nothing heavy, so each stage pays only for what it uses.
"""

__version__ = "0.1.0"
