"""Re-parameterise the RIFormer backbone of a trained RT-DETR checkpoint.

    python tools/deploy/reparam_riformer.py CONFIG CHECKPOINT OUT
        [--no-ema] [--deploy-config DEPLOY_CONFIG] [--cfg-options k=v ...]

CONFIG is the training-time config (e.g. configs/rtdetr_riformer_s12.py),
CHECKPOINT a checkpoint trained with it (an mmengine checkpoint with a
``state_dict``, or a bare state dict). Every RIFormer block's affine token
mixer is folded into its norm by mmpretrain's ``switch_to_deploy()`` (the
fusion is mmpretrain's, not re-implemented), and OUT gets a checkpoint
(``meta`` + ``state_dict``) for the deploy config
(configs/deploy/rtdetr_riformer_<arch>_deploy.py, i.e. CONFIG with
``model.backbone.deploy=True``).

The script checks its own output: OUT is read back from disk, loaded into
the deploy model with no missing or unexpected keys, and the deploy
backbone's features are compared with the training-time backbone's. It prints
the parameter counts before and after.

EMA: with mmengine's ``EMAHook`` the checkpoint's ``state_dict`` already
holds the EMA weights (the hook swaps them in when saving), so they are what
is converted by default; ``--no-ema`` converts the raw weights instead (kept
under ``ema_state_dict`` as ``module.*``).
"""
import argparse
import copy
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmpretrain.models.backbones import RIFormer as MMPretrainRIFormer

import rtdetr_zoo  # noqa: F401  (registers the modules)
from mmdet.registry import MODELS

# Input of the feature check (batch, channels, height, width), values in
# [0, 1] like the data pre-processor's output.
CHECK_SHAPE = (1, 3, 64, 96)


class ReparamError(Exception):
    """A CONFIG or CHECKPOINT that cannot be re-parameterised."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config',
                        help='training-time RIFormer detector config')
    parser.add_argument('checkpoint', help='checkpoint trained with CONFIG')
    parser.add_argument('out', help='where to write the deploy checkpoint')
    parser.add_argument(
        '--no-ema', action='store_true',
        help='convert the raw (non-EMA) weights stored by EMAHook under '
        'ema_state_dict instead of state_dict (the EMA weights)')
    parser.add_argument(
        '--deploy-config',
        help='deploy config to verify OUT against (default: CONFIG with '
        'model.backbone.deploy=True)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override entries of CONFIG (and of --deploy-config), e.g. '
        'model.decoder.num_layers=3')
    return parser.parse_args(argv)


def load_config(path, cfg_options):
    if not osp.isfile(path):
        raise ReparamError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    backbone = cfg.get('model', {}).get('backbone')
    if backbone is None:
        raise ReparamError(f'config {path} has no model.backbone: not a '
                           f'RIFormer detector config')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    backbone_cls = MODELS.get(backbone.get('type'))
    if not (isinstance(backbone_cls, type)
            and issubclass(backbone_cls, MMPretrainRIFormer)):
        raise ReparamError(
            f'config {path} has backbone type {backbone.get("type")!r}, not '
            f'RIFormer (mmpretrain\'s or rtdetr_zoo\'s): nothing to '
            f're-parameterise')
    return cfg


def build_detector(cfg, path, deploy):
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.deploy = deploy
    try:
        model = MODELS.build(model_cfg)
    except (KeyError, TypeError, ValueError) as err:
        raise ReparamError(
            f'cannot build the detector of config {path} with '
            f'backbone.deploy={deploy}: {err}') from err
    if not isinstance(getattr(model, 'backbone', None), MMPretrainRIFormer):
        found = type(getattr(model, 'backbone', None)).__name__
        raise ReparamError(
            f'config {path} builds a {type(model).__name__} whose backbone is '
            f'{found}, not RIFormer: nothing to re-parameterise')
    return model.eval()


def read_checkpoint(path):
    if not osp.isfile(path):
        raise ReparamError(f'checkpoint file not found: {path}')
    try:
        # Full mmengine checkpoints hold non-tensor objects (message hub,
        # optimizer state), so this reads a file the user trusts.
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as err:  # noqa: BLE001 (any unreadable file)
        raise ReparamError(f'cannot read checkpoint {path}: {err}') from err
    if not isinstance(checkpoint, dict):
        raise ReparamError(f'checkpoint {path} holds a '
                           f'{type(checkpoint).__name__}, not a dict')
    return checkpoint


def select_state_dict(checkpoint, path, no_ema):
    """The weights to convert and a sentence saying which they are."""
    if 'state_dict' in checkpoint:
        state_dict = dict(checkpoint['state_dict'])
    elif checkpoint and all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict = dict(checkpoint)
    else:
        raise ReparamError(
            f'checkpoint {path} has no state_dict; top-level keys: '
            f'{sorted(checkpoint)[:8]}')
    has_ema = 'ema_state_dict' in checkpoint
    if not no_ema:
        source = ('state_dict (the EMA weights, swapped in by EMAHook)'
                  if has_ema else 'state_dict (no EMA weights in the file)')
        return state_dict, source
    if not has_ema:
        raise ReparamError(f'--no-ema: checkpoint {path} has no '
                           f'ema_state_dict (it was not trained with EMAHook)')
    for key, value in checkpoint['ema_state_dict'].items():
        if key.startswith('module.'):
            state_dict[key[len('module.'):]] = value
    return state_dict, 'raw (non-EMA) weights from ema_state_dict'


def check_riformer_keys(state_dict, path):
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


def load_strict(model, state_dict, what):
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ReparamError(
            f'{what}: {len(missing)} missing keys {missing[:5]}, '
            f'{len(unexpected)} unexpected keys {unexpected[:5]} (does the '
            f'config match the checkpoint: arch, decoder layers, classes?)')
    return missing, unexpected


def count_params(module):
    return sum(p.numel() for p in module.parameters())


def plain_meta(meta):
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


def reparameterize(config, checkpoint, out, cfg_options=None, no_ema=False,
                   deploy_config=None):
    """Convert ``checkpoint`` (trained with ``config``) and write ``out``.

    Returns:
        dict: parameter counts (``params_before``/``params_after`` for the
        detector, ``backbone_params_before``/``backbone_params_after``),
        ``missing_keys``/``unexpected_keys`` of the deploy load (both 0),
        ``max_abs_diff`` of the backbone features, and ``source``.

    Raises:
        ReparamError: for a missing file, a config or checkpoint that is not
            a (training-time) RIFormer detector, or an output that does not
            load cleanly / match.
    """
    if osp.abspath(out) == osp.abspath(checkpoint):
        raise ReparamError(f'OUT must differ from CHECKPOINT ({checkpoint})')
    cfg = load_config(config, cfg_options)
    if cfg.model.backbone.get('deploy', False):
        raise ReparamError(
            f'config {config} already sets model.backbone.deploy=True; pass '
            f'the training-time config the checkpoint was trained with')
    raw = read_checkpoint(checkpoint)
    state_dict, source = select_state_dict(raw, checkpoint, no_ema)
    check_riformer_keys(state_dict, checkpoint)

    model = build_detector(cfg, config, deploy=False)
    load_strict(model, state_dict, f'checkpoint {checkpoint} into {config}')
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
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    torch.save(dict(meta=meta, state_dict=model.state_dict()), out)

    # Verify what was written: read back with weights_only (as a deploy
    # loader would), load strictly into the deploy config, compare features.
    saved = torch.load(out, map_location='cpu', weights_only=True)
    if deploy_config is None:
        deploy_cfg, deploy_path = cfg, f'{config} with backbone.deploy=True'
    else:
        deploy_cfg = load_config(deploy_config, cfg_options)
        deploy_path = deploy_config
        if not deploy_cfg.model.backbone.get('deploy', False):
            raise ReparamError(f'--deploy-config {deploy_config} does not '
                               f'set model.backbone.deploy=True')
    deploy_model = build_detector(deploy_cfg, deploy_path, deploy=True)
    missing, unexpected = load_strict(deploy_model, saved['state_dict'],
                                      f'{out} into {deploy_path}')
    x = torch.rand(CHECK_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref_feats = reference(x)
        new_feats = deploy_model.backbone(x)
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


def main(argv=None):
    args = parse_args(argv)
    try:
        report = reparameterize(args.config, args.checkpoint, args.out,
                                args.cfg_options, args.no_ema,
                                args.deploy_config)
    except ReparamError as err:
        raise SystemExit(f'error: {err}') from None
    print(f'weights: {report["source"]}')
    print(f'detector parameters: {report["params_before"]:,} -> '
          f'{report["params_after"]:,}')
    print(f'backbone parameters: {report["backbone_params_before"]:,} -> '
          f'{report["backbone_params_after"]:,}')
    print(f'loaded into {report["deploy_config"]}: '
          f'{report["missing_keys"]} missing keys, '
          f'{report["unexpected_keys"]} unexpected keys')
    print(f'backbone features, max abs diff vs training-time: '
          f'{report["max_abs_diff"]:.3g}')
    print(f'saved {args.out}')
    return report


if __name__ == '__main__':
    main()
