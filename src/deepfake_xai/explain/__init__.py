"""Explanation methods behind one registry.

Every per-image method has one signature, ``method(model, images, target) -> maps`` with maps in
[0, 1] of shape (B, H, W), and is one small class overriding :meth:`Method.raw`. The bulk path
(:mod:`.bulk`) captures activations and gradients once per batch and lets every method read them.
"""

from .base import METHODS, Context, Method, NotApplicable, get_method, register  # noqa: F401
from . import methods, guided, reference  # noqa: F401  (register the methods)
