"""crysplugins: deep-learning crystallographic predictors behind one pluggy host.

The inference path (interface, host, crystal, runtime, plugins, CLI predict) needs numpy, gemmi, pluggy
and onnxruntime only; torch (training) and PyQt6 (desktop app) are optional extras.
"""
from crysplugins.errors import Cancelled, CrysError

__version__ = "0.1.0"

__all__ = ["CrysError", "Cancelled", "__version__"]
