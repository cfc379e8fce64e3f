"""Shared behaviour of the backbones: frozen stages and BN in eval mode."""
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm


class BackboneContractMixin:
    """``frozen_stages`` / ``norm_eval`` handling for timm/mmdet-style backbones.

    A subclass defines :meth:`frozen_modules` (the modules of the stem and the
    first ``frozen_stages`` stages) and calls :meth:`_freeze_stages` at the
    end of ``__init__``.
    """

    def frozen_modules(self):
        raise NotImplementedError(
            f'{type(self).__name__} must list the modules that frozen_stages '
            f'freezes')

    def _freeze_stages(self):
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        BaseModule.train(self, mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
