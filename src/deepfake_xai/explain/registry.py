"""The registry of explanation methods, filled: importing this module registers every method (each
registers itself as its module loads), so code that looks a method up imports it from here."""

from . import attention, guided, methods, reference  # noqa: F401  (register the methods)
from .base import METHODS, get_method

__all__ = ["METHODS", "get_method"]
