"""Compare the CPU inference speed of our D-FINE with Hugging Face's.

    .venvs/transformers5/bin/python tools/analysis/hf_speed.py \
        [--size n|s|m] [--threads 2] [--warmup 3] [--iters 20] \
        [--deploy] [--cfg-options k=v ...]

Run it in an environment with transformers 5 (``.venvs/transformers5``,
``tools/setup_env.sh``; transformers 5.24.0 checked). In one process, with
random weights, eval mode, ``torch.no_grad``, float32, batch 1, one random
640x640 image and the same ``--threads`` (``torch.set_num_threads``), it
times alternately (ours, HF, ours, HF, ...; ``--warmup`` untimed rounds,
then ``--iters`` timed ones, :func:`rtdetr_zoo.analysis.time_alternately`),
each run up to the final detections:

- ours: ``configs/dfine_hgnetv2_{size}_coco.py`` built by
  :func:`rtdetr_zoo.analysis.build_model` (``load_detector``), timed as
  ``tools/analysis/model_zoo_table.py`` times its eager column:
  ``model.predict`` on the batch through the model's data pre-processor
  (``BACKENDS['pytorch']``: backbone, encoder, decoder and the head's top
  300 of sigmoid(logits) over queries x classes, boxes to xyxy pixels,
  clipped). The model as the config builds it, the same structure as HF's;
  ``--deploy`` applies our deploy paths first (the encoder's RepVGG blocks
  fused: HF has no deploy form, so that compares ours-deployed with HF);
- HF: ``transformers.DFineForObjectDetection(DFineConfig)`` (:func:`hf_config`,
  the official architecture of the size), ``model(pixel_values=...)`` on the
  same pre-processed tensor (our pre-processor and HF's
  ``RTDetrImageProcessor``, the one HF's D-FINE conversion script saves
  with the checkpoints, both only divide RGB by 255 at 640x640), then
  ``RTDetrImageProcessor.post_process_object_detection(outputs,
  threshold=0.0, target_sizes=[(640, 640)])``: the library's own
  post-processing (transformers 5 has no ``DFineImageProcessor``; the
  example of ``DFineForObjectDetection.forward`` calls this), the same work
  as ours (sigmoid, top 300 over queries x classes, xyxy pixels; threshold
  0 keeps all 300; no clipping). The processor object is made once,
  outside the timing.

Reported: a markdown row (model, params ours / HF, median ms ours and HF,
the ratio ours / HF: below 1 means ours is faster, threads, iterations) and
the command line.

The HF config (:data:`HGNETV2_ARCHS`, :data:`HF_COMMON`, :data:`HF_SIZES`)
is the official D-FINE (ShihuaHuang95/DEIM ``configs/base/dfine_hgnetv2.yml``
and ``configs/deim_dfine/dfine_hgnetv2_{n,s,m}_coco.yml``), mapped as
HF's ``convert_d_fine_original_pytorch_checkpoint_to_hf.py`` maps it, plus
``freeze_backbone_batch_norms=False``: the official N / S / M train their
backbone's BatchNorm (``freeze_norm: False``), as ours does; HF's default
``True``, which the conversion script leaves, holds them as buffers of
``DFineFrozenBatchNorm2d``, whose forward is three element-wise ops instead
of ``F.batch_norm``.

The check is the parameter count. HF's equals the official model's exactly
(:data:`OFFICIAL_NUM_PARAMS`: N 3,782,693, S 10,321,877, M 19,590,064, as
``tests/test_configs.py`` records them), and ours is ``d_model + 2`` less
(S: 10,321,619 = 10,321,877 - 258), because HF keeps, as the official code
does, the denoising class embedding's padding row (``nn.Embedding(80 + 1,
d_model, padding_idx=80)``; ours, like mmdet's, has no padding row) and the
two frozen scalars ``up`` and ``reg_scale`` as ``nn.Parameter(...,
requires_grad=False)`` (buffers in ours). HF's two copies of the class and
box heads (``class_embed`` / ``bbox_embed`` of the detector and of
``model.decoder``) are tied, and ``parameters()`` counts them once.

What is not the same: HF leaves ``eval_size`` unset (its default, which the
conversion script leaves; in transformers 5.24 a set ``eval_size`` makes
AIFI skip the position embedding in eval, not cache it), so HF computes
the sine embedding of the 20x20 level every run where ours caches it
(``eval_spatial_size``); HF builds a pixel mask and resizes it to every
feature level (unused in eval); HF's anchors are ``lru_cache``d per shape,
ours cached per shape too. These are part of each implementation's cost
and stay in the timing.

Quick run: ``--threads 1 --warmup 1 --iters 2``.
"""
import argparse
import os.path as osp
import shlex
import statistics
import sys
from typing import List, Optional

import torch
import torch.nn as nn
from mmengine.config import DictAction
from mmengine.logging import MMLogger

import rtdetr_zoo  # noqa: F401  (before transformers: README.md)
from rtdetr_zoo.deploy.riformer_reparam import count_params
from rtdetr_zoo.analysis import (BACKENDS, build_model, make_inputs,
                                 time_alternately, timed)

# The configs are found from here, whatever the working folder.
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SIZE = 640
SIZES = ('n', 's', 'm')
NUM_CLASSES = 80
# Parameters of the official models with 80 classes (HGNetv2 built without
# pretrained weights; tests/test_configs.py, DFINE_OFFICIAL_NUM_PARAMS).
OFFICIAL_NUM_PARAMS = {'n': 3_782_693, 's': 10_321_877, 'm': 19_590_064}
# HGNetv2 stage tables of the official hgnetv2.py (`arch_configs`): stem
# (in, mid, out) and per stage (in, mid, out, blocks, downsample, light
# block, kernel, layers); stage 1 does not downsample, stages 3 and 4 are
# the light (depthwise) blocks with 5x5 kernels.
HGNETV2_ARCHS = {
    'B0': dict(stem_channels=[3, 16, 16],
               stage_in_channels=[16, 64, 256, 512],
               stage_mid_channels=[16, 32, 64, 128],
               stage_out_channels=[64, 256, 512, 1024],
               stage_num_blocks=[1, 1, 2, 1],
               stage_numb_of_layers=[3, 3, 3, 3]),
    'B2': dict(stem_channels=[3, 24, 32],
               stage_in_channels=[32, 96, 384, 768],
               stage_mid_channels=[32, 64, 128, 256],
               stage_out_channels=[96, 384, 768, 1536],
               stage_num_blocks=[1, 1, 3, 1],
               stage_numb_of_layers=[4, 4, 4, 4]),
}
HGNETV2_COMMON = dict(
    stage_downsample=[False, True, True, True],
    stage_light_block=[False, False, True, True],
    stage_kernel_size=[3, 3, 5, 5],
    hidden_act='relu',
    use_learnable_affine_block=True)  # use_lab: True
# DFineConfig fields of every size (configs/base/dfine_hgnetv2.yml): the
# encoder's AIFI (1 layer, 8 heads, FFN 1024, GELU) on the last level, SiLU
# in its conv blocks; the decoder (8 heads, FFN 1024, ReLU), 300 queries,
# 100 denoising queries, FDR with reg_max 32, reg_scale 4, up 0.5, the
# deformable attention's offset scale 0.5 ("default" sampling), LQE (top
# 4 probabilities, hidden 64, 2 layers), the last layer evaluated, no
# layer scaling; the backbone's BatchNorm trained (freeze_norm: False).
HF_COMMON = dict(
    num_labels=NUM_CLASSES,
    freeze_backbone_batch_norms=False,
    encoder_hidden_dim=256, encoder_ffn_dim=1024, encoder_layers=1,
    encoder_attention_heads=8, encode_proj_layers=[2],
    encoder_activation_function='gelu', activation_function='silu',
    feat_strides=[8, 16, 32], num_feature_levels=3,
    d_model=256, decoder_in_channels=[256, 256, 256], decoder_ffn_dim=1024,
    decoder_attention_heads=8, decoder_activation_function='relu',
    num_queries=300, num_denoising=100, learn_initial_query=False,
    max_num_bins=32, reg_scale=4.0, up=0.5, layer_scale=1.0, eval_idx=-1,
    top_prob_values=4, lqe_hidden_dim=64, lqe_layers=2,
    decoder_offset_scale=0.5, decoder_method='default',
    eval_size=None, anchor_image_size=None)
# Per size (configs/deim_dfine/dfine_hgnetv2_{n,s,m}_coco.yml): backbone
# arch and returned stages (HF counts the stem as index 0: official
# return_idx [1, 2, 3] is HF's out_indices [2, 3, 4]), the encoder's input
# channels, expansion and depth, the decoder's layers and points per level.
HF_SIZES = {
    's': dict(arch='B0', out_indices=[2, 3, 4],
              encoder_in_channels=[256, 512, 1024], hidden_expansion=0.5,
              depth_mult=0.34, decoder_layers=3, decoder_n_points=[3, 6, 3]),
    'm': dict(arch='B2', out_indices=[2, 3, 4],
              encoder_in_channels=[384, 768, 1536], hidden_expansion=1.0,
              depth_mult=0.67, decoder_layers=4, decoder_n_points=[3, 6, 3]),
    # Two levels (strides 16, 32) of width 128, AIFI on the second.
    'n': dict(arch='B0', out_indices=[3, 4],
              encoder_in_channels=[512, 1024], hidden_expansion=0.34,
              depth_mult=0.5, decoder_layers=3, decoder_n_points=[6, 6],
              feat_strides=[16, 32], num_feature_levels=2,
              encode_proj_layers=[1], encoder_hidden_dim=128,
              encoder_ffn_dim=512, d_model=128, decoder_in_channels=[128, 128],
              decoder_ffn_dim=512),
}
COLUMNS = ('model', 'params ours / HF', 'ours (ms)', 'HF (ms)', 'ours / HF',
           'threads', 'iterations')


def hf_config(size: str):
    """The ``transformers.DFineConfig`` of the official D-FINE-``size``
    (``'n'``, ``'s'`` or ``'m'``, 80 classes; see module doc)."""
    # transformers after rtdetr_zoo (README.md, "transformers 5").
    from transformers import DFineConfig, HGNetV2Config
    fields = dict(HF_COMMON, **HF_SIZES[size])
    arch = HGNETV2_ARCHS[fields.pop('arch')]
    backbone = HGNetV2Config(
        **arch, **HGNETV2_COMMON, out_indices=fields.pop('out_indices'),
        # Only the reported channels of each stage (embedding_size: the
        # stem's), which HF's input projections read.
        embedding_size=arch['stem_channels'][-1],
        hidden_sizes=arch['stage_out_channels'])
    return DFineConfig(backbone_config=backbone, **fields)


class HFRunner:
    """HF's D-FINE up to the final detections, ``torch.no_grad``:
    ``model(pixel_values=images)`` and
    ``RTDetrImageProcessor.post_process_object_detection`` (threshold 0:
    all ``num_queries`` top-k detections, xyxy pixels of ``images``'
    size)."""

    def __init__(self, model: nn.Module, images: torch.Tensor) -> None:
        from transformers import RTDetrImageProcessor
        self.model, self.images = model, images
        self.processor = RTDetrImageProcessor()
        self.target_sizes = [tuple(images.shape[-2:])] * len(images)

    def __call__(self):
        with torch.no_grad():
            outputs = self.model(pixel_values=self.images)
            return self.processor.post_process_object_detection(
                outputs, threshold=0.0, target_sizes=self.target_sizes)


def hf_speed(size: str, logger, warmup: int = 3, iters: int = 20,
             deploy: bool = False,
             cfg_options: Optional[dict] = None) -> dict:
    """Build both models of ``size``, check their sizes, time them
    alternately (see module doc).

    Returns:
        dict: ``config``, ``params_ours``, ``params_hf``, ``official``,
        ``ours_ms`` / ``hf_ms`` (medians) and ``ratio`` (ours / HF).
    """
    from transformers import DFineForObjectDetection
    config = f'configs/dfine_hgnetv2_{size}_coco.py'
    torch.manual_seed(0)
    ours = build_model(osp.join(REPO_ROOT, config), 'detector', cfg_options)
    torch.manual_seed(0)
    hf = DFineForObjectDetection(hf_config(size)).eval()
    params_ours, params_hf = count_params(ours), count_params(hf)
    official = OFFICIAL_NUM_PARAMS[size]
    d_model = hf.config.d_model
    logger.info(f'params: ours {params_ours:,}, HF {params_hf:,}, official '
                f'{official:,}; HF - ours = {params_hf - params_ours} '
                f'(expected {d_model} + 2: the denoising padding row, up, '
                f'reg_scale)')
    if params_hf != official or params_hf - params_ours != d_model + 2:
        logger.warning('the two models differ from the official '
                       'architecture as documented: the timing compares '
                       'different models')
    if deploy:
        # deploy/ imports onnx: loaded only with --deploy.
        from rtdetr_zoo.deploy import switch_to_deploy
        switched = switch_to_deploy(ours)
        logger.info(f'ours: deploy paths applied to {len(switched)} modules')
    inputs, samples = make_inputs(ours, 'detector', 1, SIZE, SIZE)
    images = inputs.clone()
    runners = dict(ours=BACKENDS['pytorch'](ours, inputs, samples),
                   HF=HFRunner(hf, images))
    first_ours, first_hf = runners['ours'](), runners['HF']()
    logger.info(
        f'{config} vs DFineForObjectDetection (attention '
        f'{hf.config._attn_implementation}): input '
        f'{"x".join(map(str, inputs.shape))}, {torch.get_num_threads()} '
        f'threads; detections: ours {len(first_ours[0].pred_instances)}, '
        f'HF {len(first_hf[0]["scores"])}')
    times = time_alternately(
        {name: timed(runner) for name, runner in runners.items()}, warmup,
        iters, logger)
    ours_ms = statistics.median(times['ours']) * 1000
    hf_ms = statistics.median(times['HF']) * 1000
    return dict(config=config, params_ours=params_ours, params_hf=params_hf,
                official=official, ours_ms=ours_ms, hf_ms=hf_ms,
                ratio=ours_ms / hf_ms)


def format_row(result: dict, size: str, threads: int, iters: int) -> str:
    """One markdown row of :data:`COLUMNS`."""
    return '| ' + ' | '.join([
        f'D-FINE-{size.upper()} (`{osp.basename(result["config"])}`)',
        f'{result["params_ours"]:,} / {result["params_hf"]:,}',
        f'{result["ours_ms"]:.1f}', f'{result["hf_ms"]:.1f}',
        f'{result["ratio"]:.2f}x', str(threads), str(iters)
    ]) + ' |'


def command_line() -> str:
    """This run's command (the interpreter relative to the working folder
    when it is inside it)."""
    python = sys.executable
    relative = osp.relpath(python)
    if not relative.startswith('..'):
        python = relative
    return shlex.join([python, *sys.argv])


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--size', choices=SIZES, default='s',
                        help='D-FINE size (configs/dfine_hgnetv2_'
                        '{size}_coco.py)')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch CPU threads of both models')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed rounds')
    parser.add_argument('--iters', type=int, default=20,
                        help='timed rounds (each: ours, then HF)')
    parser.add_argument('--deploy', action='store_true',
                        help='apply our deploy paths (RepVGG fusion) to ours '
                        '(HF has none)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of our config, key=value '
                        '(the HF model does not follow)')
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.threads < 1:
        parser.error('--iters and --threads must be >= 1, --warmup >= 0')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logger = MMLogger.get_instance('hf_speed', log_level='INFO')
    torch.set_num_threads(args.threads)
    import transformers
    result = hf_speed(args.size, logger, warmup=args.warmup, iters=args.iters,
                      deploy=args.deploy, cfg_options=args.cfg_options)
    threads = torch.get_num_threads()
    lines = [
        '| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS),
        format_row(result, args.size, threads, args.iters), '',
        f'CPU, batch 1, {SIZE}x{SIZE}, float32, torch.no_grad, random '
        f'weights, medians of {args.iters} alternating rounds after '
        f'{args.warmup} warm-up; ours: model.predict'
        f'{" (deploy paths applied)" if args.deploy else ""}, HF: '
        f'DFineForObjectDetection + RTDetrImageProcessor.'
        f'post_process_object_detection; official params '
        f'{result["official"]:,}; torch {torch.__version__}, transformers '
        f'{transformers.__version__}.', '', f'Command: `{command_line()}`'
    ]
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
