r"""Conversion of foreign checkpoint layouts to rtdetr_zoo's: the official
RT-DETR (lyuwenyu/RT-DETR ``rtdetr_pytorch``) and RT-DETRv2
(``rtdetrv2_pytorch``) models, and Ultralytics' RT-DETR.

:func:`convert_checkpoint_layout` is the one conversion on load: it detects
the layout (:func:`checkpoint_layout`), converts it, leaves out the
class-dependent tensors of another number of classes and logs what it did.
``RTDETR.load_state_dict`` calls it through :func:`convert_layout_pre_hook`
(so ``load_from``, ``tools/test.py``, ``mmdet.apis.init_detector`` and
``mmengine.runner.load_checkpoint`` take official and Ultralytics files as
they are), :meth:`~rtdetr_zoo.engine.RTDETRRunner.load_checkpoint` before
its hooks, and :func:`convert_checkpoint_file` (the
``tools/model_converters`` scripts) to write a converted file.

The official v1 and v2 layouts differ in three names only: v2's encoder
input projection is ``encoder.input_proj.i.conv`` / ``.norm`` (v1: ``.0`` /
``.1``), its query selection projection ``decoder.enc_output.proj`` /
``.norm`` (v1: ``.0`` / ``.1``), and each v2 cross-attention has a
``num_points_scale`` buffer, renamed to the same buffer of
:class:`~rtdetr_zoo.layers.MultiScaleDeformableAttentionV2` (which checks on
load that it matches its ``num_points``).

Every official tensor is accounted for: renamed to a key of our model
(:data:`RENAMES`, then the special cases of
:func:`convert_official_state_dict`), or listed as dropped with the reason;
an official key with no mapping is an error, so nothing is silently lost.

Ultralytics' RT-DETR (``rtdetr-l.pt``, ``rtdetr-x.pt``, read by
:func:`~rtdetr_zoo.engine.ultralytics_checkpoint.read_ultralytics_checkpoint`)
is the official RT-DETR-L / X written as a YAML layer list
(``ultralytics/cfg/models/rt-detr/rtdetr-{l,x}.yaml``): ``model.0`` the
HGStem, then the HGNetv2 stages (``DWConv`` down-sampling, ``HGBlock``\ s),
the hybrid encoder as single layers (``Conv`` input projections and lateral
convs, ``AIFI``, ``RepC3`` fusion blocks, stride-2 ``Conv``\ s) and the
``RTDETRDecoder`` last, whose names are the official decoder's.
:func:`convert_ultralytics_state_dict` recognises each layer by its tensors
(:func:`ultralytics_layer_kind`), gives it its place in our model and maps
the decoder through the official names; every tensor is accounted for.
"""
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Collection, Dict, Iterable, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from .checkpoint import extract_state_dict, read_checkpoint

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
    # D-FINE's SCDown sits in an nn.Sequential of its own.
    (r'^encoder\.downsample_convs\.(\d+)\.0\.(cv[12])\.',
     r'neck.downsample_convs.\1.\2.'),
    (r'^encoder\.(lateral_convs|fpn_blocks|downsample_convs|pan_blocks)\.',
     r'neck.\1.'),
    # Decoder.
    (r'^decoder\.input_proj\.(\d+)\.', r'input_proj.\1.'),
    # D-FINE: the gate replaces the second norm of a layer; the LQEs and
    # the pre-refinement box head are the head's; the weighting function's
    # frozen parameters are the decoder's buffers.
    (r'^decoder\.decoder\.layers\.(\d+)\.gateway\.',
     r'decoder.layers.\1.norms.1.'),
    (r'^decoder\.decoder\.lqe_layers\.(\d+)\.', r'bbox_head.lqe_layers.\1.'),
    (r'^decoder\.pre_bbox_head\.layers\.(\d+)\.',
     lambda m: f'bbox_head.pre_reg_branch.{2 * int(m[1])}.'),
    (r'^decoder\.(up|reg_scale)$', r'decoder.\1'),
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


def is_official_hgnetv2_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a state dict uses the official RT-DETR ``HGNetv2`` key names
    (``stages.s.blocks.b.layers.l``, ``aggregation_*_conv``)."""
    return any(re.match(r'stages\.\d+\.(blocks|downsample)\.', k)
               for k in state_dict)


def convert_official_hgnetv2(
        state_dict: Mapping[str, Tensor],
        downsample_stages: Collection[int]) -> Dict[str, Tensor]:
    """Map the official RT-DETR ``HGNetv2`` layout (lyuwenyu/RT-DETR, e.g.
    ``PPHGNetV2_L_ssld_pretrained_from_paddle.pth``) onto :class:`HGNetv2`.

    ``stem.stem2{a,b}.conv.1`` (padding + conv) -> ``stem.stem2{a,b}.conv``;
    ``stages.s.downsample`` -> ``stages.s.0``; ``stages.s.blocks.b`` ->
    ``stages.s.(b + 1 if s has a down-sampling conv else b)`` with
    ``layers`` -> ``convs``, ``aggregation_squeeze_conv`` (D-FINE:
    ``aggregation.0``) -> ``squeeze``, ``aggregation_excitation_conv``
    (``aggregation.1``) -> ``excite``. D-FINE's layout (e.g.
    ``PPHGNetV2_B0_stage1.pth``) is the same apart from those two names and
    the ``lab`` affines, whose names are kept. Other keys are kept, so that
    loading reports them as unexpected.
    """
    converted = OrderedDict()
    for key, value in state_dict.items():
        new = re.sub(r'^stem\.(stem2[ab])\.conv\.1\.', r'stem.\1.conv.', key)
        new = re.sub(r'^stages\.(\d+)\.downsample\.', r'stages.\1.0.', new)
        match = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)$', new)
        if match:
            stage, block, rest = int(match[1]), int(match[2]), match[3]
            block += 1 if stage in downsample_stages else 0
            rest = re.sub(r'^layers\.', 'convs.', rest)
            rest = rest.replace('aggregation_squeeze_conv.', 'squeeze.')
            rest = rest.replace('aggregation_excitation_conv.', 'excite.')
            rest = rest.replace('aggregation.0.', 'squeeze.')
            rest = rest.replace('aggregation.1.', 'excite.')
            new = f'stages.{stage}.{block}.{rest}'
        converted[new] = value
    return converted


def rename_official_key(key: str) -> Optional[str]:
    """Our key for an official ``key`` by :data:`RENAMES`, or ``None``."""
    for pattern, repl in RENAMES:
        new, count = re.subn(pattern, repl, key)
        if count:
            # ConvNormLayer's ``.norm.`` is mmcv ConvModule's ``.bn.``.
            if not new.startswith(('decoder.layers', 'neck.encoder')):
                new = new.replace('.norm.', '.bn.')
            return new
    return None


def convert_official_key(key: str, num_layers: int) -> Optional[str]:
    """Our key for an official ``key`` (``None`` without a mapping): the
    encoder's query-selection heads ``decoder.enc_score_head`` /
    ``enc_bbox_head`` are our class and box branches number ``num_layers``
    (the number of decoder layers), everything else is
    :func:`rename_official_key`."""
    if key.startswith('decoder.enc_score_head.'):
        return key.replace('decoder.enc_score_head.',
                           f'bbox_head.cls_branches.{num_layers}.')
    if m := re.match(r'decoder\.enc_bbox_head\.layers\.(\d+)\.(.*)', key):
        return (f'bbox_head.reg_branches.{num_layers}.{2 * int(m[1])}.'
                f'{m[2]}')
    return rename_official_key(key)


def _num_decoder_layers(state_dict: Iterable[str],
                        score_head_prefix: str) -> int:
    """1 + the highest ``<score_head_prefix><i>.`` index in the keys."""
    pattern = re.compile(re.escape(score_head_prefix) + r'(\d+)\.')
    return 1 + max((int(m[1]) for k in state_dict
                    if (m := pattern.match(k))), default=-1)


def convert_official_state_dict(
        official: Mapping[str, torch.Tensor]) -> Tuple[dict, dict]:
    """Map an official RT-DETR, RT-DETRv2, DEIM, D-FINE or DEIM-D-FINE
    state dict to ours.

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
    num_layers = _num_decoder_layers(official, 'decoder.dec_score_head.')
    backbone = {k[len('backbone.'):]: v for k, v in official.items()
                if k.startswith('backbone.')}
    if is_official_hgnetv2_layout(backbone):
        # HGNetv2 (RT-DETR-L / X, D-FINE): the backbone's own conversion,
        # its down-sampling stages read from the keys; its tensors come
        # first, as in the official state dict.
        downsample_stages = {int(m[1]) for k in backbone if (
            m := re.match(r'stages\.(\d+)\.downsample\.', k))}
        backbone = convert_official_hgnetv2(backbone, downsample_stages)
        converted.update(
            {f'backbone.{k}': v.float() if v.is_floating_point() else v
             for k, v in backbone.items()})
        official = {k: v for k, v in official.items()
                    if not k.startswith('backbone.')}
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
        if re.match(r'decoder\.decoder\.(up|reg_scale)$', key):
            dropped[key] = (f'the same parameter as {key[len("decoder."):]} '
                            f'(D-FINE shares it)')
            continue
        if re.match(r'decoder\.(anchors|valid_mask)$', key) or \
                re.match(r'encoder\.pos_embed\d+$', key):
            dropped[key] = 'cached buffer, recomputed by our model'
            continue
        new = convert_official_key(key, num_layers)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value
    if unknown:
        raise KeyError(f'no mapping for official keys: {unknown}')
    return converted, dropped


# ---------------------------------------------------------------------------
# Ultralytics RT-DETR (ultralytics/cfg/models/rt-detr/rtdetr-{l,x}.yaml)
# ---------------------------------------------------------------------------

#: A key that only an Ultralytics RT-DETR state dict has: the decoder's class
#: heads inside the YAML layer list (``model.28.`` in rtdetr-l, ``model.32.``
#: in rtdetr-x).
ULTRALYTICS_DECODER_KEY = re.compile(r'model\.(\d+)\.dec_score_head\.')

# (pattern, replacement) on the key inside one Ultralytics layer, by the
# layer's module (ultralytics/nn/modules/{block,conv,transformer}.py); the
# first match wins, a key without match has no mapping. ``Conv`` is conv +
# ``bn`` (+ act), as our ``conv_bn`` ConvModule; ``LightConv`` (1x1 conv1,
# depthwise conv2) and ``RepConv`` (3x3 conv1, 1x1 conv2) have our names.
ULTRALYTICS_LAYER_RENAMES = {
    'HGStem': [(r'^(stem(?:1|2a|2b|3|4)\.(?:conv|bn)\.)', r'\1')],
    'HGBlock': [(r'^m\.(\d+)\.((?:conv[12]\.)?(?:conv|bn)\.)', r'convs.\1.\2'),
                (r'^sc\.((?:conv|bn)\.)', r'squeeze.\1'),
                (r'^ec\.((?:conv|bn)\.)', r'excite.\1')],
    'Conv': [(r'^((?:conv|bn)\.)', r'\1')],
    # AIFI = TransformerEncoderLayer: nn.MultiheadAttention ``ma``, FFN
    # fc1 / fc2, post-norms norm1 / norm2.
    'AIFI': [(r'^ma\.((?:in_proj_weight|in_proj_bias)$|out_proj\.)',
              r'self_attn.attn.\1'),
             (r'^fc1\.', 'ffn.layers.0.0.'), (r'^fc2\.', 'ffn.layers.1.'),
             (r'^norm([12])\.', lambda m: f'norms.{int(m[1]) - 1}.')],
    'RepC3': [(r'^cv([123])\.((?:conv|bn)\.)', r'conv\1.\2'),
              (r'^m\.(\d+)\.(conv[12]\.(?:conv|bn)\.)', r'bottlenecks.\1.\2')],
}
#: BatchNorm epsilon of every Ultralytics model (``initialize_weights`` in
#: ``ultralytics/utils/torch_utils.py`` sets it on each ``nn.BatchNorm2d``,
#: and it is pickled with the model) and of ours (mmcv / torch default).
ULTRALYTICS_BN_EPS = 1e-3
BN_EPS = 1e-5

# The layers after the backbone, in YAML order (the same in rtdetr-l and
# rtdetr-x): (module, where it goes in our model). Upsample and Concat
# layers hold no tensors.
ULTRALYTICS_HEAD = (
    ('Conv', 'neck.input_proj.2.'),
    ('AIFI', 'neck.encoder.0.encoder.layers.0.'),
    ('Conv', 'neck.lateral_convs.0.'), ('Conv', 'neck.input_proj.1.'),
    ('RepC3', 'neck.fpn_blocks.0.'), ('Conv', 'neck.lateral_convs.1.'),
    ('Conv', 'neck.input_proj.0.'), ('RepC3', 'neck.fpn_blocks.1.'),
    ('Conv', 'neck.downsample_convs.0.'), ('RepC3', 'neck.pan_blocks.0.'),
    ('Conv', 'neck.downsample_convs.1.'), ('RepC3', 'neck.pan_blocks.1.'),
    ('RTDETRDecoder', ''))


def is_ultralytics_layout(state_dict: Iterable[str]) -> bool:
    """Whether a state dict uses Ultralytics' RT-DETR names
    (``model.<i>.dec_score_head.*``)."""
    return any(ULTRALYTICS_DECODER_KEY.match(k) for k in state_dict)


def ultralytics_layer_kind(keys: Iterable[str]) -> Optional[str]:
    """The Ultralytics module of one layer from its keys (the part after
    ``model.<i>.``): ``'HGStem'``, ``'HGBlock'``, ``'Conv'`` (also
    ``DWConv``), ``'AIFI'``, ``'RepC3'``, ``'RTDETRDecoder'``, or ``None``
    for anything else."""
    keys = set(keys)
    if any(k.startswith('dec_score_head.') for k in keys):
        return 'RTDETRDecoder'
    for kind, marker in (('HGStem', 'stem1.conv.weight'),
                         ('HGBlock', 'sc.conv.weight'),
                         ('AIFI', 'ma.in_proj_weight'),
                         ('RepC3', 'cv1.conv.weight')):
        if marker in keys:
            return kind
    if 'conv.weight' in keys and all(k.startswith(('conv.', 'bn.'))
                                     for k in keys):
        return 'Conv'
    return None


def _ultralytics_layer_prefixes(layers):
    """``{layer index: (module, our prefix)}`` for the layers (``{index:
    keys}``) of an Ultralytics RT-DETR: the backbone (HGStem, then per
    stage an optional down-sampling ``Conv`` and its ``HGBlock``\\ s, as
    :class:`~rtdetr_zoo.backbones.HGNetv2` numbers them in ``stages.s``),
    then :data:`ULTRALYTICS_HEAD`.

    Raises:
        KeyError: The layers do not form that structure.
    """
    indices = sorted(layers)
    kinds = [ultralytics_layer_kind(layers[i]) for i in indices]
    num_backbone = len(indices) - len(ULTRALYTICS_HEAD)
    head_kinds = [kind for kind, _ in ULTRALYTICS_HEAD]
    if num_backbone < 2 or kinds[num_backbone:] != head_kinds or \
            kinds[0] != 'HGStem' or \
            not set(kinds[1:num_backbone]) <= {'Conv', 'HGBlock'}:
        raise KeyError(
            f'not the Ultralytics RT-DETR layout of rtdetr-l / rtdetr-x '
            f'(HGStem, Conv / HGBlock stages, then {head_kinds}): layers '
            f'{dict(zip(indices, kinds))}')
    prefixes = {indices[0]: ('HGStem', 'backbone.stem.')}
    # A stage starts at its down-sampling conv, or right after the stem.
    stage, position, previous = -1, 0, 'HGStem'
    for index, kind in zip(indices[1:num_backbone], kinds[1:num_backbone]):
        if kind == 'Conv' or previous == 'HGStem':
            stage, position = stage + 1, 0
        prefixes[index] = (kind, f'backbone.stages.{stage}.{position}.')
        position, previous = position + 1, kind
    for index, (kind, prefix) in zip(indices[num_backbone:],
                                     ULTRALYTICS_HEAD):
        prefixes[index] = (kind, prefix)
    return prefixes


def _ultralytics_decoder_key(key, num_layers):
    """Our key for a key inside Ultralytics' ``RTDETRDecoder``: the input
    projections are ``input_proj.i.{0,1}`` (conv, BN), the denoising
    embedding is ``nn.Embedding(nc, hd)`` as mmdet's (no padding row); the
    rest has the official decoder's names (:func:`convert_official_key`)."""
    if m := re.match(r'input_proj\.(\d+)\.([01])\.(.*)', key):
        return f'input_proj.{m[1]}.{("conv", "bn")[int(m[2])]}.{m[3]}'
    if key == 'denoising_class_embed.weight':
        return 'dn_query_generator.label_embedding.weight'
    return convert_official_key('decoder.' + key, num_layers)


def convert_ultralytics_state_dict(
        ultralytics: Mapping[str, torch.Tensor]) -> Tuple[dict, dict]:
    """Map an Ultralytics RT-DETR state dict (``rtdetr-l`` / ``rtdetr-x``,
    names of ``RTDETRDetectionModel.state_dict()``) to ours.

    Args:
        ultralytics (Mapping[str, Tensor]): The Ultralytics model's
            weights.

    BatchNorm variances are shifted by ``ULTRALYTICS_BN_EPS - BN_EPS``:
    Ultralytics normalises by ``sqrt(var + 1e-3)``, our BatchNorms by
    ``sqrt(var + 1e-5)``, so the eval-mode outputs stay Ultralytics'.

    Returns:
        tuple[dict, dict]: the converted state dict (fp32) and ``dropped``
        (``{key: reason}``; empty: Ultralytics keeps no cached buffers in
        its state dict).

    Raises:
        KeyError: The layers are not the rtdetr-l / rtdetr-x structure, or
            a key has no mapping (listed).
    """
    layers = {}
    for key in ultralytics:
        m = re.match(r'model\.(\d+)\.(.+)', key)
        if m is None:
            raise KeyError(f'no mapping for Ultralytics key {key} (keys are '
                           f'model.<layer>.*)')
        layers.setdefault(int(m[1]), []).append(m[2])
    prefixes = _ultralytics_layer_prefixes(layers)
    decoder_index = max(layers)
    num_layers = _num_decoder_layers(layers[decoder_index], 'dec_score_head.')
    converted, unknown = {}, []
    for key, value in ultralytics.items():
        m = re.match(r'model\.(\d+)\.(.+)', key)
        kind, prefix = prefixes[int(m[1])]
        new = None
        if kind == 'RTDETRDecoder':
            new = _ultralytics_decoder_key(m[2], num_layers)
        else:
            for pattern, repl in ULTRALYTICS_LAYER_RENAMES[kind]:
                renamed, count = re.subn(pattern, repl, m[2])
                if count:
                    new = prefix + renamed
                    break
        if new is None:
            unknown.append(key)
            continue
        value = value.float() if value.is_floating_point() else value
        if key.endswith('.running_var'):
            # The same eval-mode BatchNorm with our epsilon:
            # var + 1e-3 = (var + 1e-3 - 1e-5) + 1e-5.
            value = value + (ULTRALYTICS_BN_EPS - BN_EPS)
        converted[new] = value
    if unknown:
        raise KeyError(f'no mapping for Ultralytics keys: {unknown}')
    return converted, {}


# ---------------------------------------------------------------------------
# Conversion on load and of checkpoint files
# ---------------------------------------------------------------------------

#: Keys only an official RT-DETR or RT-DETRv2 state dict has (ours are
#: ``neck.input_proj.``, ``bbox_head.cls_branches.``, ``decoder.layers.``).
OFFICIAL_KEY_PREFIXES = ('encoder.input_proj.', 'decoder.dec_score_head.',
                         'decoder.decoder.layers.')
#: Our tensors whose shape depends on the number of classes.
CLASS_DEPENDENT_PREFIXES = ('bbox_head.cls_branches.',
                            'dn_query_generator.label_embedding.')
#: The foreign layouts :func:`checkpoint_layout` detects: their name in
#: messages and their state-dict converter.
FOREIGN_LAYOUTS = {
    'official': ('official', convert_official_state_dict),
    'ultralytics': ('Ultralytics', convert_ultralytics_state_dict),
}


def checkpoint_layout(keys: Iterable[str]) -> Optional[str]:
    """The foreign layout of a state dict's ``keys``: ``'ultralytics'``
    (:func:`is_ultralytics_layout`), ``'official'`` (a key under
    :data:`OFFICIAL_KEY_PREFIXES`), or ``None`` for any other (ours)."""
    keys = list(keys)
    if is_ultralytics_layout(keys):
        return 'ultralytics'
    if any(k.startswith(OFFICIAL_KEY_PREFIXES) for k in keys):
        return 'official'
    return None


def convert_checkpoint_layout(
        state_dict: Mapping[str, torch.Tensor],
        model: Optional[nn.Module] = None,
        layout: Optional[str] = None,
        source: str = '') -> Mapping[str, torch.Tensor]:
    """Convert a state dict of a foreign layout to ours, for loading into
    ``model``.

    The layout is detected (:func:`checkpoint_layout`) unless ``layout``
    names it, and converted by its converter
    (:func:`convert_official_state_dict`,
    :func:`convert_ultralytics_state_dict`). With a ``model``, the
    class-dependent tensors (:data:`CLASS_DEPENDENT_PREFIXES`) whose shape
    differs from the model's are left out (fine-tuning to another number of
    classes), so they keep their initialisation. Logged to the current
    logger: the numbers of tensors read and written with every tensor
    dropped and its reason (one record), and the re-initialised tensors
    (one line, only when there are any).

    Args:
        state_dict (Mapping[str, Tensor]): Flat weights (unwrapped by
            :func:`~rtdetr_zoo.engine.extract_state_dict`).
        model (nn.Module, optional): The model the weights are for. A
            state dict in the layout of the model's own keys is not
            converted.
        layout (str, optional): ``'official'`` or ``'ultralytics'``: the
            layout ``state_dict`` must have (default: detected).
        source (str): Where the weights come from, for the messages.

    Returns:
        Mapping[str, Tensor]: The converted state dict (fp32), or
        ``state_dict`` itself when it is in neither foreign layout (without
        ``layout``) or in the model's own.

    Raises:
        ValueError: ``state_dict`` is not in the given ``layout``, or a key
            of it has no mapping (listed).
    """
    if layout is not None and layout not in FOREIGN_LAYOUTS:
        raise ValueError(f'layout must be one of {list(FOREIGN_LAYOUTS)}, '
                         f'got {layout!r}')
    found = checkpoint_layout(state_dict)
    if layout is None:
        if found is None:
            return state_dict
        layout = found
    elif found != layout:
        found_name = (f'the {FOREIGN_LAYOUTS[found][0]} layout' if found
                      else 'neither the official nor the Ultralytics layout')
        raise ValueError(
            f'{source or "the state dict"} is not an '
            f'{FOREIGN_LAYOUTS[layout][0]} RT-DETR checkpoint (it has '
            f'{found_name}; first keys: {list(state_dict)[:5]})')
    own = model.state_dict() if model is not None else {}
    if checkpoint_layout(own) == layout:
        return state_dict
    name, convert = FOREIGN_LAYOUTS[layout]
    try:
        converted, dropped = convert(state_dict)
    except KeyError as err:
        raise ValueError(f'{source or "checkpoint"}: {err.args[0]}') from err
    reinitialised = [
        k for k, v in converted.items()
        if k.startswith(CLASS_DEPENDENT_PREFIXES) and k in own
        and v.shape != own[k].shape
    ]
    of_source = f' of {source}' if source else ''
    print_log(
        f'converted {len(state_dict)} {name} tensors{of_source} into '
        f'{len(converted)} rtdetr_zoo tensors' + ''.join(
            f'\n    dropped {key}: {reason}'
            for key, reason in dropped.items()), logger='current')
    if reinitialised:
        print_log(
            f're-initialised the class-dependent tensors (the checkpoint has '
            f'another number of classes): {reinitialised}', logger='current')
    return {k: v for k, v in converted.items() if k not in reinitialised}


def convert_layout_pre_hook(module: nn.Module, state_dict: dict, prefix: str,
                            *args) -> None:
    """``load_state_dict`` pre-hook (``module.register_load_state_dict_pre_
    hook``) with which ``module`` loads a foreign checkpoint as it is.

    A whole checkpoint file (the official ``{'ema': {'module': ...}}`` of
    ``rtdetr_r18vd_dec3_6x_coco_from_paddle.pth``, a training file that
    also holds ``model`` and the optimizer) is unwrapped by
    :func:`~rtdetr_zoo.engine.extract_state_dict`, and the weights under
    ``prefix`` are replaced in place by :func:`convert_checkpoint_layout`'s
    conversion for ``module``.
    """
    own = {k[len(prefix):]: v for k, v in state_dict.items()
           if k.startswith(prefix)}
    weights = own
    if not all(isinstance(v, torch.Tensor) for v in own.values()):
        weights = extract_state_dict(own)
    converted = convert_checkpoint_layout(weights, module)
    if converted is not own:
        for key in own:
            del state_dict[prefix + key]
        state_dict.update({prefix + k: v for k, v in converted.items()})


def convert_checkpoint_file(src: str, dst: str, layout: str) -> Dict[str, int]:
    """Convert the checkpoint file ``src`` of the foreign ``layout`` and
    save it as ``dst`` (its folder made if needed).

    ``src`` is read by :func:`~rtdetr_zoo.engine.read_checkpoint` (an
    Ultralytics ``rtdetr-l.pt`` without unpickling code) and its weights
    unwrapped by :func:`~rtdetr_zoo.engine.extract_state_dict` (official:
    ``{'ema': {'module': ...}}``, ``model``, ``state_dict`` or a bare state
    dict); :func:`convert_checkpoint_layout` converts and logs them. Written:
    ``{'state_dict': ..., 'meta': {...}}``, loadable by ``load_from`` /
    ``tools/test.py``, with ``src``'s ``meta`` (an Ultralytics file's
    version and class names) and ``converted_from=src``.

    Args:
        src (str): The foreign checkpoint file.
        dst (str): The file to write.
        layout (str): ``'official'`` or ``'ultralytics'``.

    Returns:
        dict: ``num_read`` (tensors read) and ``num_converted`` (tensors
        written).

    Raises:
        FileNotFoundError, RuntimeError: ``src`` missing or unreadable.
        TypeError: ``src`` holds no state dict.
        ValueError: ``src`` is not in ``layout``, or a key without mapping.
    """
    checkpoint = read_checkpoint(src)
    weights = extract_state_dict(checkpoint, source=src)
    state_dict = convert_checkpoint_layout(weights, layout=layout, source=src)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=state_dict,
                    meta=dict(checkpoint.get('meta') or {},
                              converted_from=src)), dst)
    print_log(f'wrote {dst}', logger='current')
    return dict(num_read=len(weights), num_converted=len(state_dict))
