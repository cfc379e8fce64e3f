"""D-FINE's encoder blocks: the CSP-ELAN fusion block and the separable
down-sampling conv.

D-FINE (Peng et al., "D-FINE: Redefine Regression Task of DETRs as
Fine-grained Distribution Refinement", ICLR 2025) keeps RT-DETR's hybrid
encoder but fuses the pyramid levels with ``RepNCSPELAN4`` (after YOLOv9's
block: two chained CSP branches of RepVGG blocks, ELAN-style concatenation)
and down-samples the PAN with ``SCDown`` (after YOLOv10: a 1x1 conv, then a
depthwise stride-2 conv). Official code: ``engine/deim/hybrid_encoder.py``
of ShihuaHuang95/DEIM (the same file as Peterande/D-FINE's
``src/zoo/dfine/hybrid_encoder.py``). Both are options of
:class:`~rtdetr_zoo.necks.HybridEncoder` (``fusion_block_cfg``,
``downsample_cfg``).
"""
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from .csp_layers import CSPRepLayer, conv_bn


@MODELS.register_module()
class RepNCSPELAN4(BaseModule):
    """CSP-ELAN fusion block of D-FINE's hybrid encoder.

    ``cv1`` (1x1 conv-BN-act, C_in -> C_in) splits into two halves ``a``,
    ``b``; ``cv2`` = a :class:`CSPRepLayer` (C_in / 2 -> ``branch``) then a
    3x3 conv-BN-act on ``b``; ``cv3`` the same on ``cv2``'s output (branch ->
    branch); ``cv4`` (1x1 conv-BN-act) projects the concatenation of ``a``,
    ``b`` and both branch outputs (C_in + 2 branch channels) to C_out. The
    branch width is ``round(expansion * out_channels // 2)`` as in D-FINE's
    encoder (``c4``; 64 for hidden 256 and expansion 0.5). The signature is
    :class:`CSPRepLayer`'s, so the encoder builds either.

    Args:
        in_channels (int): Input channels C_in (even).
        out_channels (int): Output channels C_out.
        num_blocks (int): RepVGG blocks in each CSP branch. Defaults to 3.
        expansion (float): Branch width ratio (see above). Defaults to 1.0.
        act_cfg (dict): Activation of every conv. Defaults to SiLU.
        block_cfg (dict, optional): Bottleneck type of the CSP branches
            (default RepVGG), see :class:`CSPRepLayer`.
        norm_cfg (dict): Norm of every conv. Defaults to BN.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 num_blocks: int = 3,
                 expansion: float = 1.0,
                 act_cfg: OptConfigType = dict(type='SiLU'),
                 block_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if in_channels % 2:
            raise ValueError(f'RepNCSPELAN4 splits its input in two halves: '
                             f'in_channels must be even, got {in_channels}')
        branch = round(expansion * out_channels // 2)
        cba = dict(act_cfg=act_cfg, norm_cfg=norm_cfg)
        self.cv1 = conv_bn(in_channels, in_channels, 1, **cba)
        self.cv2 = nn.Sequential(
            CSPRepLayer(in_channels // 2, branch, num_blocks, 1.0,
                        block_cfg=block_cfg, **cba),
            conv_bn(branch, branch, 3, **cba))
        self.cv3 = nn.Sequential(
            CSPRepLayer(branch, branch, num_blocks, 1.0, block_cfg=block_cfg,
                        **cba),
            conv_bn(branch, branch, 3, **cba))
        self.cv4 = conv_bn(in_channels + 2 * branch, out_channels, 1, **cba)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        parts = list(self.cv1(x).chunk(2, dim=1))
        parts.append(self.cv2(parts[-1]))
        parts.append(self.cv3(parts[-1]))
        return self.cv4(torch.cat(parts, dim=1))


@MODELS.register_module()
class SCDown(BaseModule):
    """Spatial-channel decoupled down-sampling (YOLOv10, D-FINE's PAN): a
    1x1 conv-BN (C_in -> C_out), then a depthwise ``kernel_size`` conv-BN
    with ``stride``; no activation (D-FINE's ``SCDown`` ignores its
    ``act``).

    Shapes: (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))
    for an odd ``kernel_size``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 stride: int = 2,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.cv1 = conv_bn(in_channels, out_channels, 1, norm_cfg=norm_cfg)
        self.cv2 = conv_bn(out_channels, out_channels, kernel_size, stride,
                           groups=out_channels, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        return self.cv2(self.cv1(x))
