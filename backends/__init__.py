"""nnbin's built-in backends, one module each, all of the same shape.

Each module defines one :class:`nnbin.Backend` subclass that imports its array library
in ``__init__`` (never at module import), recognises its arrays with array-api-compat's
``is_*_array`` helper (its ``is_array``: it looks in ``sys.modules`` and imports nothing), and is
registered by name in the ``nnbin.backends`` entry-point group.
"""
