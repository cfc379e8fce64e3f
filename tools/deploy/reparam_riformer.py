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

The conversion is ``rtdetr_zoo.deploy.reparameterize``.
"""
import argparse
from typing import List, Optional

from mmengine.config import DictAction

from rtdetr_zoo.deploy import ReparamError, reparameterize


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
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


def main(argv: Optional[List[str]] = None) -> dict:
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
