"""Every explanation method's name and what the workflow needs to know of it before running it: whether
it runs by default or only when asked (opt-in), the sanity-check result the literature reports, and
the display order of panels and reports. Importable without torch, so that a config is validated and
its defaults filled in without loading a model; :func:`~.base.register` refuses a method not listed
here, and a test checks that every name listed here is registered."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str
    opt_in: bool = False  # run only when the config names it (cost, or a reference copy)
    expected_sanity: str | None = None  # "passes" or "fails" the randomization check (Adebayo et al. 2018)


# In display order: gradients, the CAM family, pytorch-grad-cam's, guided, attention.
CATALOG: tuple[MethodInfo, ...] = (
    MethodInfo("saliency", "saliency", expected_sanity="passes"),
    MethodInfo("activation", "activation"),
    MethodInfo("cam", "CAM"),
    MethodInfo("gradcam", "Grad-CAM", expected_sanity="passes"),
    MethodInfo("gradcam++", "Grad-CAM++"),
    MethodInfo("hirescam", "HiResCAM"),
    MethodInfo("layercam", "LayerCAM"),
    MethodInfo("eigencam", "EigenCAM"),
    MethodInfo("scorecam", "ScoreCAM", opt_in=True),  # one forward pass per channel of the target layer
    MethodInfo("guided_backprop", "guided backprop", expected_sanity="fails"),
    MethodInfo("guided_gradcam", "guided Grad-CAM"),
    MethodInfo("attention_rollout", "attention rollout"),  # vision transformers only
    MethodInfo("gradcam_reference", "Grad-CAM (pytorch-grad-cam)", opt_in=True),  # the reference, for tests
)
BY_NAME = {m.name: m for m in CATALOG}
# The slides' Grad-CAM panel, and what `deepfake-xai explain` shows by default (the panel + saliency).
PANEL_METHODS = ("gradcam", "guided_backprop", "guided_gradcam")
SINGLE_IMAGE_METHODS = (*PANEL_METHODS, "saliency")
# What replaces removed pixels in the deletion/insertion curves beside the default ones (quality.py
# builds them; xai.replacements picks, all by default).
REPLACEMENTS = ("black", "mean", "blur", "noise", "jpeg")
# Whose mean maps show the spatial priors in the explanation-quality report (xai.prior_method).
PRIOR_METHOD = "gradcam"


def names() -> list[str]:
    return [m.name for m in CATALOG]


def default_methods() -> list[str]:
    """What explain.methods is when the config does not say: every method that is not opt-in."""
    return [m.name for m in CATALOG if not m.opt_in]


def check_names(names_given, key: str) -> None:
    """A clear error for a name that is no method (the config key named, the known names listed)."""
    unknown = [n for n in names_given if n not in BY_NAME]
    if unknown:
        raise ValueError(f"{key}: unknown explanation method(s) {', '.join(map(repr, unknown))}; the methods: "
                         f"{', '.join(names())} (opt-in: {', '.join(m.name for m in CATALOG if m.opt_in)})")


def in_display_order(names_given) -> list[str]:
    """The given method names in the catalog's order (unknown names last, as given)."""
    order = {n: i for i, n in enumerate(names())}
    return sorted(names_given, key=lambda n: order.get(n, len(order)))
