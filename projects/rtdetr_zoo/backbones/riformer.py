"""RIFormer backbone for RT-DETR: a thin mmdet wrapper around mmpretrain's.

RIFormer (Wang et al., "RIFormer: Keep Your Vision Backbone Effective While
Removing Token Mixer", CVPR 2023, https://arxiv.org/abs/2304.05659) is a
PoolFormer-shaped backbone whose blocks have no token mixer at inference: the
training-time per-channel affine mixer ``affine(norm1(x)) - x`` is folded into
the affine parameters of ``norm1`` by structural re-parameterisation.

The blocks, the stages and the fusion (``switch_to_deploy``) are mmpretrain
1.2's :class:`mmpretrain.models.backbones.RIFormer`, reused unchanged. This
wrapper puts it under the backbone contract (:mod:`.base`): ``out_indices``
and ``frozen_stages`` count RIFormer's four stages like every other backbone
and are mapped here onto mmpretrain's ``network`` list
``[stage1, down, stage2, down, stage3, down, stage4]``; it also pads the
input so that every output is ``ceil(H / stride) x ceil(W / stride)``, and
refuses to fold into BatchNorm.
"""
from typing import List, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import constant_init, trunc_normal_init
from mmpretrain.models.backbones.riformer import RIFormer as _RIFormer
from mmpretrain.models.backbones.riformer import RIFormerBlock
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.registry import MODELS

from .base import BackboneContract


def _network_positions(arch):
    """Positions of the stages in mmpretrain's ``network`` list, and of the
    patch embedding in front of each stage (None when widths match)."""
    dims = arch['embed_dims']
    stage_positions, down_positions = [], [None]
    position = 0
    for i in range(len(dims)):
        stage_positions.append(position)
        position += 1
        if i < len(dims) - 1:
            if dims[i] != dims[i + 1]:
                down_positions.append(position)
                position += 1
            else:
                down_positions.append(None)
    return stage_positions, down_positions


@MODELS.register_module()
class RIFormer(BackboneContract, _RIFormer):
    """RIFormer backbone (mmpretrain's, reused) for mmdet detectors.

    Args:
        arch (str | dict): ``'s12'``, ``'s24'``, ``'s36'``, ``'m36'``,
            ``'m48'`` (see ``RIFormer.arch_settings``) or a dict with
            ``layers`` and ``embed_dims``. Defaults to ``'s12'``.
        out_indices (Sequence[int]): Stages to output (0-based over the four
            stages, negatives count from the end; each output goes through
            its own norm, mmpretrain's ``norm{position}``). Defaults to
            ``(1, 2, 3)``: strides 8/16/32, as RT-DETR's encoder expects.
        frozen_stages (int): Freeze the patch embedding and the first
            ``frozen_stages`` stages (with the patch embeddings in front of
            them and their output norms); -1 freezes nothing.
        norm_eval (bool): keep BatchNorm layers in eval mode while training.
            Only has an effect with a BatchNorm ``norm_cfg``; the default
            GroupNorm has no running statistics. Defaults to False.
        deploy (bool): build the inference-time blocks (``norm_reparam``
            instead of ``norm1`` + ``token_mixer``). Defaults to False.
        in_stride (int): stride of mmpretrain's input patch embedding (7x7,
            padding 2); the input is padded to a multiple of it so that its
            output is exactly ``ceil(H / in_stride)``. Defaults to 4.
        down_stride (int): stride of the patch embeddings between stages
            (3x3, padding 1, so ``ceil`` shapes). Defaults to 2.
        **kwargs: the other arguments of mmpretrain's ``RIFormer``
            (``norm_cfg``, ``act_cfg``, ``drop_path_rate``, ``init_cfg``...).
            Without a ``Pretrained`` init_cfg the weights are initialised as
            mmpretrain's ImageNet recipe (:meth:`default_init`).

    Shapes:
        input (B, 3, H, W), any H and W: it is zero-padded at the bottom and
        right to a multiple of ``in_stride``, so output ``k`` is
        (B, out_channels[k], ceil(H / s_k), ceil(W / s_k)) with
        ``s_k = out_strides[k]``.
    """

    smallest_cfg = dict(arch='s12')

    def __init__(self,
                 arch: Union[str, dict] = 's12',
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 deploy: bool = False,
                 in_stride: int = 4,
                 down_stride: int = 2,
                 **kwargs) -> None:
        settings = self.arch_settings.get(arch) if isinstance(
            arch, str) else arch
        if not isinstance(settings, dict) or not {
                'layers', 'embed_dims'} <= set(settings):
            raise ValueError(
                f'RIFormer arch must be one of {sorted(self.arch_settings)} '
                f'or a dict with layers and embed_dims, got {arch!r}')
        num_stages = len(settings['embed_dims'])
        resolved = self.set_stage_args(out_indices, frozen_stages, norm_eval,
                                       num_stages)
        self.stage_positions, self.down_positions = _network_positions(
            settings)
        # mmpretrain rewrites the list in place; it gets a fresh list of
        # network positions and freezes nothing itself.
        super().__init__(
            arch=arch,
            out_indices=[self.stage_positions[i] for i in self.out_indices],
            frozen_stages=-1, deploy=deploy, in_stride=in_stride,
            down_stride=down_stride, **kwargs)
        # mmpretrain stored its own values under the contract's names.
        self.out_indices = resolved
        self.frozen_stages = frozen_stages
        self.in_stride = in_stride
        strides, stride = [], in_stride
        for i in range(num_stages):
            if i > 0 and self.down_positions[i] is not None:
                stride *= down_stride
            strides.append(stride)
        self.set_feature_info(settings['embed_dims'], strides)
        self.apply_frozen_stages()

    def stage_module_names(self) -> Tuple[List[str], List[List[str]]]:
        """The stem is ``patch_embed``; stage ``i`` is the patch embedding in
        front of it, its blocks and its output norm."""
        stages = []
        for i, position in enumerate(self.stage_positions):
            names = [f'network.{position}']
            if i > 0 and self.down_positions[i] is not None:
                names.insert(0, f'network.{self.down_positions[i]}')
            if hasattr(self, f'norm{position}'):
                names.append(f'norm{position}')
            stages.append(names)
        return ['patch_embed'], stages

    def default_init(self) -> None:
        """mmpretrain's ImageNet recipe: Conv2d and Linear trunc-normal
        (std 0.02, bias 0), GroupNorm weight 1 and bias 0."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                trunc_normal_init(module, std=0.02, bias=0.)
            elif isinstance(module, nn.GroupNorm):
                constant_init(module, 1., bias=0.)

    def _freeze_stages(self):
        """mmpretrain's freezing hook; the contract's
        :meth:`apply_frozen_stages` freezes instead (see ``train``)."""

    def forward_tokens(self, x: Tensor) -> Tuple[Tensor, ...]:
        """mmpretrain's stage loop, reading the network positions of the
        selected stages."""
        outs = []
        last = self.stage_positions[self.out_indices[-1]]
        positions = [self.stage_positions[i] for i in self.out_indices]
        for position, block in enumerate(self.network[:last + 1]):
            x = block(x)
            if position in positions:
                outs.append(getattr(self, f'norm{position}')(x))
        return tuple(outs)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, C, H, W) -> tuple of (B, out_channels[k], ceil(H / s_k),
        ceil(W / s_k))."""
        pad_h = -x.shape[-2] % self.in_stride
        pad_w = -x.shape[-1] % self.in_stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.forward_tokens(self.forward_embeddings(x))

    def switch_to_deploy(self) -> None:
        """Fold every block's token mixer into its norm (mmpretrain's
        ``RIFormerBlock.switch_to_deploy``), in place.

        Raises:
            ValueError: if the blocks use BatchNorm, whose running
                statistics mmpretrain's fusion does not carry over.
        """
        for name, module in self.named_modules():
            if isinstance(module, RIFormerBlock) and isinstance(
                    getattr(module, 'norm1', None), _BatchNorm):
                raise ValueError(
                    f'cannot re-parameterise {name}: its norm1 is a '
                    f'{type(module.norm1).__name__}; the fusion is exact only '
                    f'for norms without running statistics (GN, LN)')
        super().switch_to_deploy()
