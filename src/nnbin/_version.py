"""nnbin's version, in a module of its own: every module can import it without reaching
the package's ``__init__`` (which imports nearly everything)."""

__version__ = "0.1.0"
