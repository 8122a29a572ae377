"""nnbin's conformance suite: every backend against an independent NumPy reference."""
