"""RIFormer backbone for RT-DETR: a thin mmdet wrapper around mmpretrain's.

RIFormer (Wang et al., "RIFormer: Keep Your Vision Backbone Effective While
Removing Token Mixer", CVPR 2023, https://arxiv.org/abs/2304.05659) is a
PoolFormer-shaped backbone whose blocks have no token mixer at inference: the
training-time per-channel affine mixer ``affine(norm1(x)) - x`` is folded into
the affine parameters of ``norm1`` by structural re-parameterisation.

The blocks, the stages and the fusion (``switch_to_deploy``) are mmpretrain
1.2's :class:`mmpretrain.models.backbones.RIFormer`, reused unchanged. This
wrapper only adds what an mmdet backbone needs: validated non-negative
``out_indices``, the ``out_channels`` / ``out_strides`` attributes, input
padding so that every output is ``ceil(H / stride) x ceil(W / stride)`` for
any input size, ``norm_eval``, and a guard against folding into BatchNorm.
"""
import torch.nn.functional as F
from mmpretrain.models.backbones.riformer import RIFormer as _RIFormer
from mmpretrain.models.backbones.riformer import RIFormerBlock
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.registry import MODELS

# mmpretrain's ``network`` list: stage1, down, stage2, down, stage3, down,
# stage4 (for the built-in archs, whose widths change at every stage).
NUM_NETWORK_ENTRIES = 7


@MODELS.register_module()
class RIFormer(_RIFormer):
    """RIFormer backbone (mmpretrain's, reused) for mmdet detectors.

    Args:
        arch (str | dict): ``'s12'``, ``'s24'``, ``'s36'``, ``'m36'``,
            ``'m48'`` (see ``RIFormer.arch_settings``) or a dict with
            ``layers`` and ``embed_dims``. Defaults to ``'s12'``.
        out_indices (Sequence[int]): positions in the 7-entry ``network``
            list [stage1, down, stage2, down, stage3, down, stage4] whose
            outputs are returned (each through its own norm ``norm{i}``).
            Negative values count from the end. Defaults to ``(2, 4, 6)``:
            stages 2-4, strides 8/16/32, as RT-DETR's encoder expects.
        frozen_stages (int): mmpretrain's semantics, in ``network``
            positions: ``k >= 0`` freezes the patch embedding and
            ``network[0..k]`` (and their output norms); -1 freezes nothing.
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

    Shapes:
        input (B, 3, H, W), any H and W: it is zero-padded at the bottom and
        right to a multiple of ``in_stride`` (4), so output
        ``k`` is (B, out_channels[k], ceil(H / s_k), ceil(W / s_k)) with
        ``s_k = out_strides[k]``.
    """

    def __init__(self, arch='s12', out_indices=(2, 4, 6), frozen_stages=-1,
                 norm_eval=False, deploy=False, in_stride=4, down_stride=2,
                 **kwargs):
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        indices = []
        for index in out_indices:
            if not isinstance(index, int) or not (
                    -NUM_NETWORK_ENTRIES <= index < NUM_NETWORK_ENTRIES):
                raise ValueError(
                    f'out_indices must be ints in [-{NUM_NETWORK_ENTRIES}, '
                    f'{NUM_NETWORK_ENTRIES - 1}] (positions in the network '
                    f'list), got {tuple(out_indices)}')
            indices.append(index % NUM_NETWORK_ENTRIES)
        if not indices or any(a >= b for a, b in zip(indices, indices[1:])):
            raise ValueError(
                f'out_indices must be non-empty and strictly increasing once '
                f'negative values are resolved, got {tuple(out_indices)} -> '
                f'{tuple(indices)}')
        # mmpretrain rewrites the list in place; it only ever sees a fresh
        # list of non-negative indices.
        super().__init__(
            arch=arch, out_indices=indices, frozen_stages=frozen_stages,
            deploy=deploy, in_stride=in_stride, down_stride=down_stride,
            **kwargs)
        if indices[-1] >= len(self.network):
            raise ValueError(
                f'out_indices {tuple(out_indices)} out of range: this arch '
                f'has {len(self.network)} network entries')
        self.norm_eval = norm_eval
        self.in_stride = in_stride
        self.out_channels = [
            getattr(self, f'norm{i}').weight.shape[0] for i in indices
        ]
        self.out_strides = [
            in_stride * down_stride**((i + 1) // 2) for i in indices
        ]

    def forward(self, x):
        """(B, C, H, W) -> tuple of (B, out_channels[k], ceil(H / s_k),
        ceil(W / s_k))."""
        pad_h = -x.shape[-2] % self.in_stride
        pad_w = -x.shape[-1] % self.in_stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return super().forward(x)

    def train(self, mode=True):
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def switch_to_deploy(self):
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
