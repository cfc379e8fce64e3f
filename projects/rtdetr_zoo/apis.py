"""Building a detector from a config: the one way for tools, demo and tests.

:func:`load_detector` is mmdet's ``init_detector`` (default scope, build,
dataset meta and palette, device, eval mode) with what our tools need on
top: a clear error for a missing config or checkpoint, the backbone's
``init_cfg`` dropped so that nothing is downloaded, checkpoints read by
:func:`rtdetr_zoo.engine.read_checkpoint` (weights-only, any layout that
:func:`rtdetr_zoo.engine.extract_state_dict` unwraps) and an optional strict
key check that lists the missing and unexpected keys.
:func:`draw_predictions` runs a detector on image files and draws the
detections (``demo/image_demo.py``). :func:`bf16_autocast` and
:func:`enable_bf16_testing` are the bfloat16 inference switches of the demo
and ``tools/test.py``.
"""
import contextlib
import copy
import os
import os.path as osp
import warnings
from typing import ContextManager, List, Mapping, Optional, Tuple, Union

import mmcv
import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.utils import track_iter_progress
from torch import Tensor, nn

from mmdet.apis import inference_detector, init_detector
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer

from .engine.checkpoint import extract_state_dict, read_checkpoint

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')
# init_detector's warning when it builds without a checkpoint (it then sets
# COCO class names, which is what a random-weight model gets here too).
_NO_CHECKPOINT_WARNING = 'checkpoint is None'


def load_config(config: Union[str, Config],
                cfg_options: Optional[dict] = None) -> Config:
    """A config file or ``Config`` -> a new ``Config`` (the argument is not
    modified) with ``cfg_options`` (a dict of dotted keys, or nested dicts)
    merged.

    Raises:
        FileNotFoundError: ``config`` is a path that does not exist.
    """
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def load_weights(model: nn.Module,
                 state_dict: Mapping[str, Tensor],
                 strict: bool = True,
                 source: str = 'checkpoint') -> Tuple[List[str], List[str]]:
    """Load ``state_dict`` into ``model``.

    Args:
        model (nn.Module): Model to load into.
        state_dict (Mapping[str, Tensor]): Weights, keys as in
            ``model.state_dict()``.
        strict (bool): Raise when a key is missing or unexpected.
        source (str): What the weights are, for error messages.

    Returns:
        tuple[list[str], list[str]]: missing and unexpected keys.

    Raises:
        RuntimeError: A tensor whose shape differs from the model's, or (with
            ``strict``) missing / unexpected keys, listed with their counts.
    """
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:
        raise RuntimeError(f'{source} does not fit {type(model).__name__}: '
                           f'{err}') from err
    if strict and (missing or unexpected):
        raise RuntimeError(
            f'{source} does not match {type(model).__name__}: '
            f'{len(missing)} missing keys {missing[:10]}, {len(unexpected)} '
            f'unexpected keys {unexpected[:10]} (does the config match the '
            f'checkpoint: backbone, decoder layers, classes?)')
    return missing, unexpected


def _checkpoint_dataset_meta(checkpoint, built_meta):
    """``init_detector``'s dataset meta for a checkpoint: the checkpoint's
    ``meta.dataset_meta`` (keys lower-cased) or ``meta.CLASSES``, with the
    config's palette taking precedence over the checkpoint's."""
    meta = checkpoint.get('meta') or {}
    if 'dataset_meta' in meta:
        dataset_meta = {k.lower(): v for k, v in meta['dataset_meta'].items()}
    elif 'CLASSES' in meta:
        dataset_meta = {'classes': meta['CLASSES']}
    else:
        warnings.warn('the checkpoint\'s meta has no dataset_meta or class '
                      'names: COCO classes are used')
        return built_meta
    palette = built_meta.get('palette', 'random')
    if palette != 'random' or 'palette' not in dataset_meta:
        dataset_meta['palette'] = palette
    return dataset_meta


def load_detector(config: Union[str, Config],
                  checkpoint: Optional[str] = None,
                  cfg_options: Optional[dict] = None,
                  device: str = 'cpu',
                  strict: bool = True) -> nn.Module:
    """Build a config's detector in eval mode, optionally with weights.

    Args:
        config (str | Config): Config file or object (not modified).
        checkpoint (str, optional): Checkpoint file or URL. Without one the
            weights stay as built (random; enough to export, benchmark or
            count FLOPs) and ``init_weights`` is not called, as in mmdet.
        cfg_options (dict, optional): Overrides merged into the config.
        device (str): Device to put the model on.
        strict (bool): Require the checkpoint's keys to match the model's
            exactly.

    Returns:
        nn.Module: The detector, with the merged config as ``model.cfg`` and
        ``model.dataset_meta`` (classes and palette, from the checkpoint's
        meta when it has one, else COCO classes).

    Raises:
        FileNotFoundError: A missing config or local checkpoint file.
        RuntimeError: An unreadable checkpoint, or one whose weights do not
            fit the model (see :func:`load_weights`).
    """
    cfg = load_config(config, cfg_options)
    if cfg.model.get('backbone') is not None:
        cfg.model.backbone.init_cfg = None
    if (checkpoint is not None and '://' not in str(checkpoint)
            and not osp.isfile(checkpoint)):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
    # init_detector takes the palette from the test dataset when it has one.
    palette = 'none' if cfg.get('test_dataloader') else 'random'
    with warnings.catch_warnings(record=True) as caught:
        model = init_detector(cfg, None, palette=palette, device=device)
    for warning in caught:
        if _NO_CHECKPOINT_WARNING not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category,
                                   warning.filename, warning.lineno)
    if checkpoint is not None:
        loaded = read_checkpoint(checkpoint)
        load_weights(model, extract_state_dict(loaded, source=checkpoint),
                     strict, source=f'checkpoint {checkpoint}')
        model.dataset_meta = _checkpoint_dataset_meta(loaded,
                                                      model.dataset_meta)
    return model


def list_images(inputs: str) -> List[str]:
    """``inputs`` itself if it is a file, else the images (by extension,
    :data:`IMAGE_EXTENSIONS`) in the folder ``inputs``, sorted, not
    recursive.

    Raises:
        FileNotFoundError: ``inputs`` does not exist, or is a folder without
            images.
    """
    if osp.isfile(inputs):
        return [inputs]
    if not osp.isdir(inputs):
        raise FileNotFoundError(f'input image or folder not found: {inputs}')
    images = sorted(
        osp.join(inputs, name) for name in os.listdir(inputs)
        if name.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise FileNotFoundError(
            f'no images ({", ".join(IMAGE_EXTENSIONS)}) in folder {inputs}')
    return images


def bf16_autocast(device: Union[str, torch.device] = 'cpu',
                  enabled: bool = True) -> ContextManager:
    """``torch.autocast`` in bfloat16 on ``device``'s type (a no-op context
    when not ``enabled``).

    The detector's backbone, neck and decoder then run in bfloat16 where
    torch's autocast allows it (convolutions, matmuls); its box and class
    heads, query-selection boxes and anchors stay float32 (see
    :class:`~rtdetr_zoo.dense_heads.RTDETRHead`). docs/performance.md gives
    the speed and the measured difference to float32.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def enable_bf16_testing(cfg: Config) -> Config:
    """Make ``cfg``'s test loop run under bfloat16 autocast
    (``tools/test.py --bf16``): mmengine's ``TestLoop(fp16=True)`` autocast,
    which is bfloat16 on a CPU; on a GPU the CUDA autocast dtype is set to
    bfloat16 as well (mmengine's default there is float16)."""
    cfg.test_cfg = dict(cfg.get('test_cfg') or dict(type='TestLoop'),
                        fp16=True)
    if torch.cuda.is_available():
        torch.set_autocast_dtype('cuda', torch.bfloat16)
    print_log('testing under bfloat16 autocast (heads and boxes in '
              'float32)', logger='current')
    return cfg


def draw_predictions(
        inputs: str,
        config: Union[str, Config],
        checkpoint: Optional[str],
        out_dir: str,
        score_thr: float = 0.3,
        device: str = 'cpu',
        cfg_options: Optional[dict] = None,
        bf16: bool = False) -> List[Tuple[str, DetDataSample]]:
    """Predict every image of ``inputs`` and draw the detections.

    Each image goes through the config's test pipeline and
    ``model.predict`` (mmdet's ``inference_detector``); boxes, class names
    and scores above ``score_thr`` are drawn by mmdet's
    ``DetLocalVisualizer`` on the original image, saved under ``out_dir``
    (created) with the input's file name. Class names and palette come from
    the checkpoint's ``dataset_meta`` (see :func:`load_detector`).

    Args:
        inputs (str): An image file or a folder of images.
        config (str | Config): Detector config.
        checkpoint (str): Checkpoint file or URL.
        out_dir (str): Folder for the drawn images.
        score_thr (float): Draw detections with a score above this.
        device (str): Device to run on.
        cfg_options (dict, optional): Config overrides.
        bf16 (bool): Predict under bfloat16 autocast (:func:`bf16_autocast`).

    Returns:
        list[tuple[str, DetDataSample]]: output path and prediction of each
        image (boxes in original-image pixels).
    """
    images = list_images(inputs)
    model = load_detector(config, checkpoint, cfg_options, device=device)
    visualizer = DetLocalVisualizer.get_instance('rtdetr_zoo_image_demo')
    visualizer.dataset_meta = model.dataset_meta
    os.makedirs(out_dir, exist_ok=True)
    outputs = []
    for path in track_iter_progress(images):
        image = mmcv.imread(path)
        if image is None:
            raise ValueError(f'cannot read image {path}')
        with bf16_autocast(device, bf16):
            result = inference_detector(model, image)
        out_file = osp.join(out_dir, osp.basename(path))
        visualizer.add_datasample(
            osp.basename(path), mmcv.bgr2rgb(image), data_sample=result,
            draw_gt=False, show=False, pred_score_thr=score_thr,
            out_file=out_file)
        outputs.append((out_file, result))
    return outputs
