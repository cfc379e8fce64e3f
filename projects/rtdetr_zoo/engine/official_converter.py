"""Conversion of official RT-DETR (rtdetr_pytorch) and RT-DETRv2
(rtdetrv2_pytorch) weights to rtdetr_zoo.

The two layouts differ in three names only: v2's encoder input projection is
``encoder.input_proj.i.conv`` / ``.norm`` (v1: ``.0`` / ``.1``), its query
selection projection ``decoder.enc_output.proj`` / ``.norm`` (v1: ``.0`` /
``.1``), and each v2 cross-attention has a ``num_points_scale`` buffer,
renamed to the same buffer of
:class:`~rtdetr_zoo.layers.MultiScaleDeformableAttentionV2` (which checks on
load that it matches its ``num_points``).

Every official tensor is accounted for: renamed to a key of our model
(:data:`RENAMES`, then the special cases of
:func:`convert_official_state_dict`), or listed as dropped with the reason;
an official key with no mapping is an error, so nothing is silently lost.
:func:`convert_official_checkpoint` reads an official file (``{'ema':
{'module': ...}}``, ``model``, ``state_dict`` or a bare state dict) and
writes ``{'state_dict': ..., 'meta': {...}}``, loadable by ``load_from`` /
``tools/test.py``.
"""
import os
import os.path as osp
import re

import torch

from ..engine.checkpoint import extract_state_dict, read_checkpoint

# (pattern on the official key, replacement in our model), applied in order;
# the first match wins. Norm renames (``norm`` -> ``bn``) follow.
RENAMES = [
    # ResNet-vd (PResNet) backbone.
    (r'^backbone\.conv1\.conv1_(\d)\.',
     lambda m: f'backbone.stem.{int(m[1]) - 1}.'),
    (r'^backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.short\.conv\.'
     r'(conv|norm)\.',
     r'backbone.stages.\1.\2.shortcut.1.\3.'),
    (r'^backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.short\.conv\.',
     r'backbone.stages.\1.\2.shortcut.0.conv.'),
    (r'^backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.short\.norm\.',
     r'backbone.stages.\1.\2.shortcut.0.norm.'),
    (r'^backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.branch2([abc])\.',
     lambda m: f'backbone.stages.{m[1]}.{m[2]}.conv{"abc".index(m[3]) + 1}.'),
    # Hybrid encoder.
    (r'^encoder\.input_proj\.(\d+)\.0\.', r'neck.input_proj.\1.conv.'),
    (r'^encoder\.input_proj\.(\d+)\.1\.', r'neck.input_proj.\1.norm.'),
    (r'^encoder\.input_proj\.(\d+)\.(conv|norm)\.',  # RT-DETRv2
     r'neck.input_proj.\1.\2.'),
    (r'^encoder\.encoder\.(\d+)\.layers\.(\d+)\.self_attn\.',
     r'neck.encoder.\1.encoder.layers.\2.self_attn.attn.'),
    (r'^encoder\.encoder\.(\d+)\.layers\.(\d+)\.linear1\.',
     r'neck.encoder.\1.encoder.layers.\2.ffn.layers.0.0.'),
    (r'^encoder\.encoder\.(\d+)\.layers\.(\d+)\.linear2\.',
     r'neck.encoder.\1.encoder.layers.\2.ffn.layers.1.'),
    (r'^encoder\.encoder\.(\d+)\.layers\.(\d+)\.norm([12])\.',
     lambda m: f'neck.encoder.{m[1]}.encoder.layers.{m[2]}.norms.'
     f'{int(m[3]) - 1}.'),
    (r'^encoder\.(lateral_convs|fpn_blocks|downsample_convs|pan_blocks)\.',
     r'neck.\1.'),
    # Decoder.
    (r'^decoder\.input_proj\.(\d+)\.', r'input_proj.\1.'),
    (r'^decoder\.decoder\.layers\.(\d+)\.self_attn\.',
     r'decoder.layers.\1.self_attn.attn.'),
    (r'^decoder\.decoder\.layers\.(\d+)\.cross_attn\.',
     r'decoder.layers.\1.cross_attn.'),
    (r'^decoder\.decoder\.layers\.(\d+)\.linear1\.',
     r'decoder.layers.\1.ffn.layers.0.0.'),
    (r'^decoder\.decoder\.layers\.(\d+)\.linear2\.',
     r'decoder.layers.\1.ffn.layers.1.'),
    (r'^decoder\.decoder\.layers\.(\d+)\.norm([123])\.',
     lambda m: f'decoder.layers.{m[1]}.norms.{int(m[2]) - 1}.'),
    (r'^decoder\.query_pos_head\.', 'decoder.query_pos_head.'),
    (r'^decoder\.enc_output\.0\.', 'memory_trans_fc.'),
    (r'^decoder\.enc_output\.1\.', 'memory_trans_norm.'),
    (r'^decoder\.enc_output\.proj\.', 'memory_trans_fc.'),  # RT-DETRv2
    (r'^decoder\.enc_output\.norm\.', 'memory_trans_norm.'),  # RT-DETRv2
    (r'^decoder\.dec_score_head\.(\d+)\.', r'bbox_head.cls_branches.\1.'),
    (r'^decoder\.dec_bbox_head\.(\d+)\.layers\.(\d+)\.',
     lambda m: f'bbox_head.reg_branches.{m[1]}.{2 * int(m[2])}.'),
]


def rename_official_key(key):
    """Our key for an official ``key`` by :data:`RENAMES`, or ``None``."""
    for pattern, repl in RENAMES:
        new, count = re.subn(pattern, repl, key)
        if count:
            # ConvNormLayer's ``.norm.`` is mmcv ConvModule's ``.bn.``.
            if not new.startswith(('decoder.layers', 'neck.encoder')):
                new = new.replace('.norm.', '.bn.')
            return new
    return None


def convert_official_state_dict(official):
    """Map an official RT-DETR or RT-DETRv2 state dict to ours.

    Args:
        official (Mapping[str, Tensor]): The official model's state dict.

    Returns:
        tuple[dict, dict]: the converted state dict (fp32) and ``dropped``,
        ``{official_key: reason}`` for every tensor not carried over.

    Raises:
        KeyError: when an official key has no known mapping (so nothing is
            silently lost).
    """
    converted, dropped, unknown = {}, {}, []
    num_layers = 1 + max(
        (int(m[1]) for k in official
         if (m := re.match(r'decoder\.dec_score_head\.(\d+)\.', k))),
        default=-1)
    for key, value in official.items():
        value = value.float() if value.is_floating_point() else value
        if key == 'decoder.denoising_class_embed.weight':
            converted['dn_query_generator.label_embedding.weight'] = \
                value[:-1].clone()
            dropped[key + '[-1]'] = (
                'padding row (padding_idx=num_classes) of the official '
                'denoising embedding; mmdet\'s CdnQueryGenerator has no '
                'padding entry')
            continue
        if key.startswith('decoder.enc_score_head.'):
            converted[key.replace('decoder.enc_score_head.',
                                  f'bbox_head.cls_branches.{num_layers}.')] \
                = value
            continue
        if m := re.match(r'decoder\.enc_bbox_head\.layers\.(\d+)\.(.*)', key):
            converted[f'bbox_head.reg_branches.{num_layers}.'
                      f'{2 * int(m[1])}.{m[2]}'] = value
            continue
        if re.match(r'decoder\.(anchors|valid_mask)$', key) or \
                re.match(r'encoder\.pos_embed\d+$', key):
            dropped[key] = 'cached buffer, recomputed by our model'
            continue
        new = rename_official_key(key)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value
    if unknown:
        raise KeyError(f'no mapping for official keys: {unknown}')
    return converted, dropped


def convert_official_checkpoint(src, dst):
    """Convert the official checkpoint file ``src`` and save it as ``dst``.

    Returns:
        dict: ``num_official`` (tensors read), ``num_converted`` (tensors
        written) and ``dropped`` (``{official_key: reason}``).

    Raises:
        FileNotFoundError, RuntimeError: ``src`` missing or unreadable
            (:func:`read_checkpoint`).
        TypeError: ``src`` holds no state dict.
        KeyError: An official key without mapping.
    """
    official = extract_state_dict(read_checkpoint(src), source=src)
    state_dict, dropped = convert_official_state_dict(official)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=dict(converted_from=src)),
               dst)
    return dict(num_official=len(official), num_converted=len(state_dict),
                dropped=dropped)
