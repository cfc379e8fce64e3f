"""Static INT8 quantization of an exported RT-DETR graph (ONNX Runtime).

:func:`quantize_onnx` takes the fp32 graph of
:func:`rtdetr_zoo.deploy.export_onnx` and writes a QDQ graph
(``onnxruntime.quantization.quantize_static``, ``QuantFormat.QDQ``,
per-channel int8 weights, uint8 activations, MinMax calibration) calibrated
on real images, each read as BGR, resized to the graph's (H, W) like the
test pipeline's ``Resize(keep_ratio=False)`` and fed as float32 RGB
(1, 3, H, W) in [0, 255].

What is quantized (chosen by measurement, see docs/deploy.md): the nodes of
op types :data:`DEFAULT_OP_TYPES` whose name matches one of
:data:`DEFAULT_SCOPES` (the traced module path): the backbone, the hybrid
encoder, the input projection and the decoder's value projection. The
query selection, the rest of the decoder (sampling offsets, attention
weights, deformable sampling ``GridSample``, softmax, self-attention, FFN)
and the box / class heads stay fp32.
"""
import os
import os.path as osp
import logging
import re
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import onnx
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

from ..apis import list_images, load_config
from .onnx_eval import check_one_image_batch, graph_input_shape
from .onnx_export import INPUT_NAMES, bgr_to_onnx_input, create_ort_session

# Besides Conv / MatMul / Gemm, the element-wise ops between them (SiLU =
# Sigmoid * x, residual Add, Concat, up-sampling Resize, pooling) so that
# activations stay int8 instead of a Dequantize / Quantize pair around each.
DEFAULT_OP_TYPES = ('Conv', 'MatMul', 'Gemm', 'Sigmoid', 'Mul', 'Add',
                    'Concat', 'Resize', 'MaxPool', 'AveragePool')
# Regular expressions matched (``re.match``) against node names, which the
# exporter writes as the traced module path: backbone, encoder, input
# projection and the decoder's value projection of the encoder memory (a
# plain linear layer over all tokens, before the deformable sampling).
DEFAULT_SCOPES = ('/backbone/', '/neck/', '/input_proj',
                  r'/decoder/layers\.\d+/cross_attn/value_proj/')
DEFAULT_CALIB_IMAGES = 32


def train_image_paths(config: Union[str, Config],
                      num_images: int,
                      cfg_options: Optional[dict] = None) -> List[str]:
    """``num_images`` image files of the config's training set
    (``cfg.train_dataloader.dataset``, dataset wrappers unwrapped), spread
    evenly over it.

    Raises:
        ValueError: The training set has no images.
    """
    from mmdet.registry import DATASETS
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = cfg.train_dataloader.dataset
    while 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg.dataset
    dataset_cfg = dataset_cfg.copy()
    dataset_cfg['pipeline'] = []
    dataset = DATASETS.build(dataset_cfg)
    if len(dataset) == 0:
        raise ValueError(f'the training set of {config} '
                         f'({dataset_cfg.get("ann_file")}) has no images')
    picks = np.linspace(0, len(dataset) - 1, min(num_images, len(dataset)))
    return [dataset.get_data_info(int(i))['img_path']
            for i in np.unique(picks.round().astype(int))]


class ImageCalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over image files:
    each ``get_next()`` is ``{'images': (1, 3, H, W) float32 RGB}`` of the
    next image resized to ``input_shape`` (H, W), ``None`` at the end; a
    progress bar counts the images."""

    def __init__(self, image_paths: Iterable[str],
                 input_shape: Tuple[int, int]) -> None:
        self.paths = list(image_paths)
        self.height, self.width = input_shape
        self.index = 0
        self.progress = None

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        """The next image as the graph's feed dict, None after the last."""
        if self.index >= len(self.paths):
            return None
        if self.progress is None:
            self.progress = ProgressBar(len(self.paths))
        path = self.paths[self.index]
        image = mmcv.imread(path)
        if image is None:
            raise ValueError(f'cannot read calibration image {path}')
        image = mmcv.imresize(image, (self.width, self.height))
        self.index += 1
        self.progress.update()
        return {INPUT_NAMES[0]: bgr_to_onnx_input(image)}

    def rewind(self) -> None:
        """Start again at the first image."""
        self.index = 0


def nodes_in_scopes(
        path: str,
        op_types: Sequence[str] = DEFAULT_OP_TYPES,
        scopes: Optional[Sequence[str]] = DEFAULT_SCOPES) -> List[str]:
    """Names of the nodes of ``path`` whose op type is in ``op_types`` and
    whose name matches (``re.match``) one of the regular expressions
    ``scopes`` (all nodes if ``scopes`` is empty or ``None``)."""
    graph = onnx.load(path, load_external_data=False).graph
    patterns = [re.compile(scope) for scope in scopes or ()]
    return [node.name for node in graph.node
            if node.op_type in op_types
            and (not patterns or any(p.match(node.name) for p in patterns))]


def quantize_onnx(fp32_path: str,
                  out_path: str,
                  calib_images: Union[str, List[str]],
                  op_types: Sequence[str] = DEFAULT_OP_TYPES,
                  scopes: Optional[Sequence[str]] = DEFAULT_SCOPES,
                  nodes_to_exclude: Optional[List[str]] = None,
                  logger: Optional[logging.Logger] = None) -> dict:
    """Write a statically quantized (QDQ, per-channel) copy of a graph.

    Args:
        fp32_path (str): fp32 graph of :func:`export_onnx`; input
            ``images`` (B, 3, H, W) with fixed H, W and B 1 or dynamic.
        out_path (str): Output ``.onnx`` (its folder is created).
        calib_images (str | list[str]): A folder of images or image files.
        op_types (tuple[str]): Op types to quantize.
        scopes (tuple[str], optional): Quantize only the nodes whose name
            matches (``re.match``) one of these regular expressions (module
            paths such as ``'/backbone/'``); ``None`` or empty: every node
            of ``op_types``.
        nodes_to_exclude (list[str], optional): Node names kept fp32.
        logger (logging.Logger, optional): Where the summary goes.

    Returns:
        dict: ``path``, ``num_calib_images``, ``num_quantized_nodes``,
        ``input_shape`` (H, W).

    Raises:
        FileNotFoundError: Missing graph, image folder without images.
        ValueError: No calibration images, a graph with a dynamic input size
            or a fixed batch other than 1.
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    logger = logger or MMLogger.get_current_instance()
    if not osp.isfile(fp32_path):
        raise FileNotFoundError(f'ONNX file not found: {fp32_path}')
    if isinstance(calib_images, str):
        calib_images = list_images(calib_images)
    if not calib_images:
        raise ValueError('no calibration images given')
    for path in calib_images:
        if not osp.isfile(path):
            raise FileNotFoundError(f'calibration image not found: {path}')
    batch, height, width = graph_input_shape(
        create_ort_session(fp32_path), fp32_path)
    check_one_image_batch(batch, fp32_path,
                          'calibration feeds one image at a time')
    os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        # Shape inference + graph optimisation (BatchNorm folding, constant
        # folding) as onnxruntime recommends before quantization.
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        nodes = nodes_in_scopes(prepared, op_types, scopes)
        if nodes_to_exclude:
            nodes = [n for n in nodes if n not in set(nodes_to_exclude)]
        if not nodes:
            raise ValueError(f'no node of {fp32_path} matches op types '
                             f'{op_types} in scopes {scopes}')
        logger.info(f'calibrating {len(nodes)} nodes ({", ".join(op_types)}'
                    f' in {scopes or "the whole graph"}) of {fp32_path} on '
                    f'{len(calib_images)} images at {height}x{width}')
        quantize_static(
            prepared, out_path,
            ImageCalibrationReader(calib_images, (height, width)),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
            per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
            calibrate_method=CalibrationMethod.MinMax)
    return dict(path=out_path, num_calib_images=len(calib_images),
                num_quantized_nodes=len(nodes), input_shape=(height, width))
