"""nads: Neural Anisotropy Directions (Ortiz-Jimenez et al., NeurIPS 2020), reproduced."""
__version__ = "0.1.0"
