"""Re-parameterisation of the RIFormer backbone of a trained RT-DETR.

:func:`reparameterize` converts a checkpoint trained with a training-time
RIFormer detector config: every RIFormer block's affine token mixer is
folded into its norm by mmpretrain's ``switch_to_deploy()`` (the fusion is
mmpretrain's, not re-implemented), and the output checkpoint (``meta`` +
``state_dict``, loadable with ``torch.load(weights_only=True)``) is for the
deploy config (``configs/deploy/rtdetr_riformer_<arch>_deploy.py``, i.e. the
config with ``model.backbone.deploy=True``).

The output is checked: read back from disk, loaded into the deploy model
with no missing or unexpected keys, and the deploy backbone's features are
compared with the training-time backbone's on a fixed random input (all of
the backbone's outputs, whatever its ``out_indices``).

EMA: with mmengine's ``EMAHook`` the checkpoint's ``state_dict`` already
holds the EMA weights (the hook swaps them in when saving), so they are what
is converted by default; ``no_ema=True`` converts the raw weights instead
(kept under ``ema_state_dict`` as ``module.*``).
"""
import copy
import os
import os.path as osp
from typing import Dict, Optional, Tuple

import torch
from mmengine.config import Config
from mmpretrain.models.backbones import RIFormer as MMPretrainRIFormer
from torch import Tensor, nn

from mmdet.registry import MODELS

from ..apis import load_config, load_detector, load_weights
from ..engine.checkpoint import extract_state_dict, read_checkpoint

# Input of the feature check (batch, channels, height, width), values in
# [0, 1] like the data pre-processor's output.
CHECK_SHAPE = (1, 3, 64, 96)


class ReparamError(Exception):
    """A config or checkpoint that cannot be re-parameterised."""


def load_riformer_config(path: str,
                         cfg_options: Optional[dict] = None) -> Config:
    """The config at ``path`` (with ``cfg_options``), checked to be a
    detector config with a RIFormer backbone (mmpretrain's or ours)."""
    try:
        cfg = load_config(path, cfg_options)
    except FileNotFoundError as err:
        raise ReparamError(str(err)) from err
    backbone = cfg.get('model', {}).get('backbone')
    if backbone is None:
        raise ReparamError(f'config {path} has no model.backbone: not a '
                           f'RIFormer detector config')
    backbone_cls = MODELS.get(backbone.get('type'))
    if not (isinstance(backbone_cls, type)
            and issubclass(backbone_cls, MMPretrainRIFormer)):
        raise ReparamError(
            f'config {path} has backbone type {backbone.get("type")!r}, not '
            f'RIFormer (mmpretrain\'s or rtdetr_zoo\'s): nothing to '
            f're-parameterise')
    return cfg


def build_riformer_detector(cfg: Config, path: str,
                            deploy: bool) -> nn.Module:
    """The detector of ``cfg`` (random weights, eval mode) with
    ``model.backbone.deploy=deploy``."""
    try:
        model = load_detector(cfg, cfg_options={
            'model.backbone.deploy': deploy})
    except (KeyError, TypeError, ValueError) as err:
        raise ReparamError(
            f'cannot build the detector of config {path} with '
            f'backbone.deploy={deploy}: {err}') from err
    if not isinstance(getattr(model, 'backbone', None), MMPretrainRIFormer):
        found = type(getattr(model, 'backbone', None)).__name__
        raise ReparamError(
            f'config {path} builds a {type(model).__name__} whose backbone is '
            f'{found}, not RIFormer: nothing to re-parameterise')
    return model


def select_state_dict(checkpoint: dict, path: str,
                      no_ema: bool) -> Tuple[Dict[str, Tensor], str]:
    """The weights of ``checkpoint`` to convert.

    Args:
        checkpoint (dict): The loaded checkpoint.
        path (str): Its file, for messages.
        no_ema (bool): Take the raw weights that ``EMAHook`` keeps under
            ``ema_state_dict`` instead of ``state_dict`` (the EMA weights).

    Returns:
        tuple[OrderedDict, str]: the state dict and a sentence saying which
        weights they are.
    """
    try:
        state_dict = extract_state_dict(checkpoint, source=path)
    except (TypeError, KeyError) as err:
        raise ReparamError(str(err)) from err
    has_ema = 'ema_state_dict' in checkpoint
    if not no_ema:
        source = ('state_dict (the EMA weights, swapped in by EMAHook)'
                  if has_ema else 'state_dict (no EMA weights in the file)')
        return state_dict, source
    if not has_ema:
        raise ReparamError(f'--no-ema: checkpoint {path} has no '
                           f'ema_state_dict (it was not trained with EMAHook)')
    raw = extract_state_dict(checkpoint['ema_state_dict'],
                             source=f'{path} (ema_state_dict)')
    # ema_state_dict also holds the EMA step counter: keep the model's keys.
    state_dict.update((k, raw[k]) for k in state_dict if k in raw)
    return state_dict, 'raw (non-EMA) weights from ema_state_dict'


def check_riformer_keys(state_dict: Dict[str, Tensor], path: str) -> None:
    """Raise unless ``state_dict`` is a training-time RIFormer detector's."""
    backbone_keys = [k for k in state_dict if k.startswith('backbone.')]
    if any('.norm_reparam.' in k for k in backbone_keys):
        raise ReparamError(
            f'checkpoint {path} is already re-parameterised (it has '
            f'backbone.*.norm_reparam weights): load it with the deploy '
            f'config directly')
    if not any('.token_mixer.affine.' in k for k in backbone_keys):
        raise ReparamError(
            f'checkpoint {path} is not a RIFormer detector checkpoint: no '
            f'backbone.network.*.token_mixer.affine weights; its backbone '
            f'keys start {backbone_keys[:3] or "(none)"}')


def _load_strict(model, state_dict, what):
    try:
        return load_weights(model, state_dict, strict=True, source=what)
    except RuntimeError as err:
        raise ReparamError(str(err)) from err


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def plain_meta(meta: Optional[dict]) -> dict:
    """The entries of ``meta`` that load with ``torch.load(weights_only=True)``
    (plain Python containers of str/int/float/bool/None)."""

    def plain(value):
        if value is None or isinstance(value, (str, int, float, bool)):
            return True
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v)
                       for k, v in value.items())
        return False

    return {k: v for k, v in (meta or {}).items() if plain(v)}


def _read(path):
    try:
        return read_checkpoint(path)
    except (FileNotFoundError, RuntimeError) as err:
        raise ReparamError(str(err)) from err


def reparameterize(config: str,
                   checkpoint: str,
                   out: str,
                   cfg_options: Optional[dict] = None,
                   no_ema: bool = False,
                   deploy_config: Optional[str] = None) -> dict:
    """Convert ``checkpoint`` (trained with ``config``) and write ``out``.

    Args:
        config (str): Training-time RIFormer detector config.
        checkpoint (str): Checkpoint trained with ``config`` (mmengine, or a
            bare state dict).
        out (str): Where to write the deploy checkpoint (folder created).
        cfg_options (dict, optional): Overrides of ``config`` (and of
            ``deploy_config``).
        no_ema (bool): Convert the raw weights instead of the EMA ones.
        deploy_config (str, optional): Deploy config to verify ``out``
            against (default: ``config`` with ``model.backbone.deploy=True``).

    Returns:
        dict: parameter counts (``params_before``/``params_after`` for the
        detector, ``backbone_params_before``/``backbone_params_after``),
        ``missing_keys``/``unexpected_keys`` of the deploy load (both 0),
        ``max_abs_diff`` of the backbone features, ``source`` (which
        weights) and ``deploy_config``.

    Raises:
        ReparamError: for a missing file, a config or checkpoint that is not
            a (training-time) RIFormer detector, or an output that does not
            load cleanly / match.
    """
    if osp.abspath(out) == osp.abspath(checkpoint):
        raise ReparamError(f'OUT must differ from CHECKPOINT ({checkpoint})')
    cfg = load_riformer_config(config, cfg_options)
    if cfg.model.backbone.get('deploy', False):
        raise ReparamError(
            f'config {config} already sets model.backbone.deploy=True; pass '
            f'the training-time config the checkpoint was trained with')
    raw = _read(checkpoint)
    state_dict, source = select_state_dict(raw, checkpoint, no_ema)
    check_riformer_keys(state_dict, checkpoint)

    model = build_riformer_detector(cfg, config, deploy=False)
    _load_strict(model, state_dict, f'checkpoint {checkpoint} into {config}')
    report = dict(source=source, params_before=count_params(model),
                  backbone_params_before=count_params(model.backbone))
    reference = copy.deepcopy(model.backbone).eval()

    model.backbone.switch_to_deploy()
    report.update(params_after=count_params(model),
                  backbone_params_after=count_params(model.backbone))

    meta = plain_meta(raw.get('meta'))
    meta['reparam_riformer'] = dict(
        source_checkpoint=osp.abspath(checkpoint), config=config,
        weights=source)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=model.state_dict()), out)

    # Verify what was written: read back, load strictly into the deploy
    # config, compare features.
    saved = _read(out)
    if deploy_config is None:
        deploy_cfg, deploy_path = cfg, f'{config} with backbone.deploy=True'
    else:
        deploy_cfg = load_riformer_config(deploy_config, cfg_options)
        deploy_path = deploy_config
        if not deploy_cfg.model.backbone.get('deploy', False):
            raise ReparamError(f'--deploy-config {deploy_config} does not '
                               f'set model.backbone.deploy=True')
    deploy_model = build_riformer_detector(deploy_cfg, deploy_path,
                                           deploy=True)
    missing, unexpected = _load_strict(deploy_model, saved['state_dict'],
                                       f'{out} into {deploy_path}')
    x = torch.rand(CHECK_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref_feats = reference(x)
        new_feats = deploy_model.backbone(x)
    if len(ref_feats) != len(new_feats):
        raise ReparamError(
            f'the deploy backbone of {deploy_path} returns {len(new_feats)} '
            f'feature maps, the training-time one {len(ref_feats)}: do the '
            f'configs agree on out_indices?')
    diff = max((a - b).abs().max().item()
               for a, b in zip(ref_feats, new_feats))
    scale = max(f.abs().max().item() for f in ref_feats)
    if diff > 1e-3 * max(1.0, scale):
        raise ReparamError(
            f're-parameterised backbone differs from the original: max abs '
            f'diff {diff:.3g} on features of magnitude {scale:.3g}')
    report.update(missing_keys=len(missing), unexpected_keys=len(unexpected),
                  max_abs_diff=diff, deploy_config=deploy_path)
    return report
