"""nads: Neural Anisotropy Directions (Ortiz-Jimenez et al., NeurIPS 2020), reproduced."""

from . import portable

# Before numpy and torch load their math libraries: the same bits on any x86-64 CPU.
portable.apply()

__version__ = "0.1.0"
