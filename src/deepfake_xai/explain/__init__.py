"""Explanation methods behind one registry.

Every per-image method has one signature, ``method(model, images, target) -> maps`` with maps in
[0, 1] of shape (B, H, W), and is one small class overriding :meth:`Method.raw`. The bulk path
(:mod:`.bulk`) captures activations and gradients once per batch and lets every method read them.
The names and what the workflow knows of each method are in :mod:`.catalog`, which loads without
torch; :mod:`.registry` holds every registered method. Nothing is imported here, so that the catalog
loads without torch; the names below are looked up when first used.
"""

_FROM_REGISTRY = ("METHODS", "get_method")
_FROM_BASE = ("Context", "Method", "NotApplicable", "register")


def __getattr__(name: str):
    if name in _FROM_REGISTRY:
        from . import registry

        return getattr(registry, name)
    if name in _FROM_BASE:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
