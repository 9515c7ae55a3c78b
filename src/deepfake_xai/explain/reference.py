"""Methods taken from pytorch-grad-cam as they are: EigenCAM and ScoreCAM (opt-in: one forward pass
per channel of the target layer), plus pytorch-grad-cam's own Grad-CAM, the reference the bulk path
is tested and benchmarked against (opt-in too; explain/catalog.py says which are)."""

from __future__ import annotations

import torch

from .base import Context, Method, register


class PytorchGradCAMMethod(Method):
    """Runs a pytorch-grad-cam class on the batch (its own forward/backward passes)."""

    cam_class = ""

    def reference(self, model, images, targets, target_layer):
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from .base import as_feature_map

        cls = getattr(pgc, self.cam_class)
        # token sequences laid on the patch grid, as this project's own methods see them
        with cls(model=model, target_layers=[target_layer],
                 reshape_transform=lambda t: as_feature_map(t, model)) as cam:
            maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        return torch.from_numpy(maps).to(images.device)

    def from_context(self, ctx: Context) -> torch.Tensor:
        with torch.enable_grad():
            return self.reference(ctx.model, ctx.images, ctx.targets, ctx.target_layer)


@register
class EigenCAM(PytorchGradCAMMethod):
    name = "eigencam"
    cam_class = "EigenCAM"
    needs_gradients = False


@register
class ScoreCAM(PytorchGradCAMMethod):
    name = "scorecam"
    cam_class = "ScoreCAM"
    needs_gradients = False


@register
class ReferenceGradCAM(PytorchGradCAMMethod):
    name = "gradcam_reference"
    cam_class = "GradCAM"
