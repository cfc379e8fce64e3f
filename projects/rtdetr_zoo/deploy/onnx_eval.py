"""COCO evaluation of an exported ONNX graph in ONNX Runtime.

The graph of :func:`rtdetr_zoo.deploy.export_onnx` is run over the config's
test dataset exactly as ``tools/test.py`` would feed the PyTorch model:

    test pipeline (LoadImageFromFile, Resize, ...) -> packed ``inputs``
      (3, H, W) uint8 BGR
      -> graph input (1, 3, H, W) float32 RGB in [0, 255]
      -> labels (K,), boxes (K, 4) xyxy in resized-image pixels, scores (K,)
      -> boxes / scale_factor (original-image pixels, like
         ``model.predict(..., rescale=True)``)
      -> ``DetDataSample.pred_instances`` fed to the config's
         ``test_evaluator`` (mmdet's ``CocoMetric`` for our configs).

:func:`iter_onnx_predictions` yields the per-image predictions (used by the
tests to compare with ``model.predict``); :func:`evaluate_onnx` builds the
dataset, session and evaluator and returns the metrics.
"""
import logging
import os.path as osp
from typing import (TYPE_CHECKING, Iterator, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from mmengine.utils import ProgressBar
from torch import Tensor

from mmdet.structures import DetDataSample

from ..apis import load_config
from .onnx_export import (INPUT_NAMES, create_ort_session, run_ort,
                          test_resize_shape)

if TYPE_CHECKING:
    import onnxruntime as ort


def graph_input_shape(
        session: 'ort.InferenceSession',
        path: str = 'the graph') -> Tuple[Optional[int], int, int]:
    """The (B, H, W) of an ONNX Runtime session's ``images`` input, with
    fixed H and W (B is ``None`` when dynamic).

    Raises:
        ValueError: H or W is dynamic (``path`` names the graph).
    """
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or not all(isinstance(v, int) for v in shape[2:]):
        raise ValueError(f'{path}: input {session.get_inputs()[0].name} has '
                         f'shape {shape}; a fixed (B, 3, H, W) is needed')
    batch = shape[0] if isinstance(shape[0], int) else None
    return batch, int(shape[2]), int(shape[3])


def check_one_image_batch(batch: Optional[int], path: str,
                          purpose: str) -> None:
    """Raise a ``ValueError`` when a graph has a fixed batch other than 1
    (``purpose`` says why one image at a time is fed)."""
    if batch not in (None, 1):
        raise ValueError(f'{path} has a fixed batch of {batch}; {purpose}: '
                         f'export with --batch 1 or --dynamic-batch')


def check_input_shape(graph_shape: Sequence[int],
                      cfg_shape: Optional[Sequence[int]], onnx_path: str,
                      config_name: str) -> None:
    """Raise a ``ValueError`` naming both sizes when the graph's fixed input
    (H, W) differs from the config's test resize (H, W)."""
    if cfg_shape is not None and tuple(graph_shape) != tuple(cfg_shape):
        raise ValueError(
            f'{onnx_path} takes {graph_shape[0]}x{graph_shape[1]} (HxW) '
            f'images but the test pipeline of {config_name} resizes to '
            f'{cfg_shape[0]}x{cfg_shape[1]}: export the graph with '
            f'--shape {cfg_shape[0]} {cfg_shape[1]}')


def build_test_dataset(cfg: Config,
                       max_images: Optional[int] = None) -> BaseDataset:
    """The config's test dataset (``cfg.test_dataloader.dataset``), limited
    to its first ``max_images`` images (mmengine's ``indices``)."""
    from mmdet.registry import DATASETS
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = cfg.test_dataloader.dataset.copy()
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f'max_images must be >= 1, got {max_images}')
        dataset_cfg['indices'] = int(max_images)
    return DATASETS.build(dataset_cfg)


def packed_to_onnx_input(inputs: Tensor) -> np.ndarray:
    """A packed test-pipeline image, (3, H, W) uint8 BGR tensor -> the graph
    input, float32 RGB (1, 3, H, W)."""
    return np.ascontiguousarray(inputs.numpy()[::-1][None], dtype=np.float32)


def iter_onnx_predictions(
        session: 'ort.InferenceSession',
        dataset: BaseDataset,
        onnx_path: str = 'the graph') -> Iterator[Tuple[dict, DetDataSample]]:
    """Run ``session`` on every image of ``dataset`` (a test dataset whose
    items are ``PackDetInputs`` dicts).

    Yields:
        tuple[dict, DetDataSample]: the dataset item (``inputs`` (3, H, W)
        uint8 BGR, ``data_samples``) and its data sample with
        ``pred_instances`` (``bboxes`` (K, 4) xyxy in original-image
        pixels, ``scores`` (K,), ``labels`` (K,)), as mmdet's
        ``model.predict(..., rescale=True)`` returns it.

    Raises:
        ValueError: An image whose resized size is not the graph's input
            size (both are named).
    """
    graph_shape = graph_input_shape(session, onnx_path)[1:]
    for index in range(len(dataset)):
        data = dataset[index]
        sample = data['data_samples']
        img_shape = tuple(data['inputs'].shape[-2:])
        if img_shape != graph_shape:
            raise ValueError(
                f'image {sample.get("img_path", index)} was resized by the '
                f'test pipeline to {img_shape[0]}x{img_shape[1]} but '
                f'{onnx_path} takes {graph_shape[0]}x{graph_shape[1]} (HxW)')
        labels, boxes, scores = run_ort(session,
                                        packed_to_onnx_input(data['inputs']))
        scale = np.tile(np.asarray(sample.scale_factor, np.float32), 2)
        pred = InstanceData()
        pred.bboxes = torch.from_numpy(boxes[0] / scale)
        pred.scores = torch.from_numpy(scores[0])
        pred.labels = torch.from_numpy(labels[0])
        result = sample.clone()
        result.pred_instances = pred
        yield data, result


def build_evaluator(cfg: Config, dataset: BaseDataset) -> Evaluator:
    """The config's ``test_evaluator`` for ``dataset``; metrics that keep a
    list of image ids (``CocoMetric.img_ids``) are restricted to the
    dataset's images, so that a subset is evaluated on itself only."""
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    img_ids = [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))]
    for metric in evaluator.metrics:
        if hasattr(metric, 'img_ids'):
            metric.img_ids = img_ids
    return evaluator


def evaluate_onnx(config: Union[str, Config],
                  onnx_path: str,
                  max_images: Optional[int] = None,
                  cfg_options: Optional[dict] = None,
                  num_threads: Optional[int] = None,
                  logger: Optional[logging.Logger] = None) -> dict:
    """COCO-evaluate an exported graph over the config's test dataset (see
    module doc), with a progress bar.

    Args:
        config (str | Config): Detector config (its ``test_dataloader`` and
            ``test_evaluator`` are used).
        onnx_path (str): Graph of :func:`export_onnx`, fixed input size
            equal to the test pipeline's resize.
        max_images (int, optional): Evaluate the first N test images only.
        cfg_options (dict, optional): Config overrides.
        num_threads (int, optional): ONNX Runtime intra-op threads.
        logger (logging.Logger, optional): Where the summary goes.

    Returns:
        dict: the evaluator's metrics (e.g. ``coco/bbox_mAP``).

    Raises:
        FileNotFoundError: Missing config or graph.
        ValueError: The graph's input size differs from the test resize,
            or its batch is fixed to more than 1.
    """
    logger = logger or MMLogger.get_current_instance()
    if not osp.isfile(onnx_path):
        raise FileNotFoundError(f'ONNX file not found: {onnx_path}')
    cfg = load_config(config, cfg_options)
    config_name = config if isinstance(config, str) else 'the config'
    session = create_ort_session(onnx_path, num_threads)
    batch, height, width = graph_input_shape(session, onnx_path)
    check_one_image_batch(batch, onnx_path,
                          'images are evaluated one at a time')
    check_input_shape((height, width), test_resize_shape(cfg), onnx_path,
                      config_name)
    dataset = build_test_dataset(cfg, max_images)
    evaluator = build_evaluator(cfg, dataset)
    logger.info(f'evaluating {onnx_path} ({INPUT_NAMES[0]} '
                f'{session.get_inputs()[0].shape}) on {len(dataset)} images '
                f'of {config_name}')
    progress = ProgressBar(len(dataset))
    for data, result in iter_onnx_predictions(session, dataset, onnx_path):
        evaluator.process(data_samples=[result],
                          data_batch=dict(inputs=[data['inputs']],
                                          data_samples=[data['data_samples']]))
        progress.update()
    return evaluator.evaluate(len(dataset))
