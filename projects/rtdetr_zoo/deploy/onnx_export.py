"""End-to-end, NMS-free ONNX export of RT-DETR detectors.

The exported graph maps an image batch to the final detections:

    images (B, 3, H, W) float32, RGB, values in [0, 255]
      -> data pre-processor normalisation ((x - mean) / std) and zero padding
         to the pre-processor's ``pad_size_divisor`` (both inside the graph)
      -> backbone -> neck -> input projection, IoU-aware query selection and
         decoder (``RTDETR.forward_transformer`` with no data samples)
      -> class logits and boxes of the evaluation decoder layer
      -> sigmoid, top-k over (queries x classes)
      -> labels (B, K) int64, boxes (B, K, 4) float32 xyxy in input pixels
         (clipped to the image), scores (B, K) float32

with ``K = min(test_cfg.max_per_img, num_queries * num_classes)``. This is
exactly what ``model.predict(..., rescale=False)`` returns for an image that
the test pipeline resized to (H, W), without any NMS.

Before tracing, every module that has a deploy path is switched to it
(:func:`switch_to_deploy`): RepVGG blocks are fused into one 3x3 conv,
RIFormer blocks are re-parameterised by mmpretrain. Spatial sizes are fixed
at export time (RT-DETR caches its anchors and AIFI position embedding per
size); the batch dimension can be dynamic.
"""
import copy
import os
import os.path as osp
import warnings
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import Tensor, nn

from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy

if TYPE_CHECKING:
    import onnxruntime as ort

#: ``(labels (K,), boxes (K, 4) xyxy, scores (K,))`` of one image.
Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]

INPUT_NAMES = ('images', )
OUTPUT_NAMES = ('labels', 'boxes', 'scores')
DEFAULT_OPSET = 17
# grid_sample (multi-scale deformable attention) needs opset 16.
MIN_OPSET = 16


def default_input_shape(model: nn.Module) -> Tuple[int, int]:
    """The evaluation size (H, W) of a detector built by
    :func:`rtdetr_zoo.apis.load_detector`: its config's
    ``model.neck.eval_spatial_size``, else the fixed ``Resize`` scale of the
    test pipeline, else (640, 640)."""
    cfg = getattr(model, 'cfg', None) or Config()
    size = cfg.get('model', {}).get('neck', {}).get('eval_spatial_size')
    if size:
        return tuple(int(v) for v in size)
    return test_resize_shape(cfg) or (640, 640)


def test_resize_shape(cfg: Config) -> Optional[Tuple[int, int]]:
    """The fixed (H, W) of the first ``Resize(scale=(W, H),
    keep_ratio=False)`` in ``cfg``'s test pipeline, or ``None`` when the
    test pipeline has no such resize."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    for transform in dataset.get('pipeline', []):
        scale = transform.get('scale')
        if (transform.get('type') == 'Resize'
                and isinstance(scale, (tuple, list)) and len(scale) == 2
                and not transform.get('keep_ratio', False)):
            return int(scale[1]), int(scale[0])
    return None


def switch_to_deploy(model: nn.Module) -> List[str]:
    """Call ``switch_to_deploy()`` on every sub-module that has one.

    The modules are collected first (a fusion may delete sub-modules), and
    the deploy switches are idempotent, so a parent that fuses its children
    and the children themselves can both be called.

    Returns:
        list[str]: names of the modules that were switched.
    """
    targets = [(name, module) for name, module in model.named_modules()
               if callable(getattr(module, 'switch_to_deploy', None))]
    for _, module in targets:
        module.switch_to_deploy()
    return [name for name, _ in targets]


class RTDETROnnxWrapper(nn.Module):
    """An RT-DETR detector as a pure tensor function for tracing.

    Args:
        detector (RTDETR): Detector in eval mode (deploy paths applied).
        input_shape (tuple[int, int]): (H, W) of the images it will see.
        max_per_img (int, optional): Detections per image (default: the
            head's ``test_cfg.max_per_img``).

    Forward: ``images`` (B, 3, H, W) float RGB in [0, 255] ->
    ``(labels (B, K), boxes (B, K, 4) xyxy pixels, scores (B, K))``.
    """

    def __init__(self,
                 detector: nn.Module,
                 input_shape: Sequence[int],
                 max_per_img: Optional[int] = None) -> None:
        super().__init__()
        self.detector = detector
        self.input_shape = tuple(int(v) for v in input_shape)
        head = detector.bbox_head
        self.num_classes = head.num_classes
        max_per_img = max_per_img or (head.test_cfg or {}).get(
            'max_per_img', detector.num_queries)
        self.topk = min(int(max_per_img),
                        detector.num_queries * self.num_classes)
        preprocessor = detector.data_preprocessor
        if getattr(preprocessor, '_enable_normalize', False):
            mean = preprocessor.mean.detach().clone().float().view(1, -1, 1, 1)
            std = preprocessor.std.detach().clone().float().view(1, -1, 1, 1)
        else:
            mean = torch.zeros(1, 1, 1, 1)
            std = torch.ones(1, 1, 1, 1)
        self.register_buffer('mean', mean, persistent=False)
        self.register_buffer('std', std, persistent=False)
        divisor = getattr(preprocessor, 'pad_size_divisor', 1) or 1
        height, width = self.input_shape
        self.pad = (0, -width % divisor, 0, -height % divisor)
        self.pad_value = float(getattr(preprocessor, 'pad_value', 0))
        canvas = (height + self.pad[3], width + self.pad[1])
        self.register_buffer(
            'box_scale',
            torch.tensor([canvas[1], canvas[0]] * 2, dtype=torch.float32),
            persistent=False)
        self.register_buffer(
            'box_max', torch.tensor([width, height] * 2, dtype=torch.float32),
            persistent=False)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(B, 3, H, W) float RGB in [0, 255] -> labels (B, K), boxes
        (B, K, 4) xyxy in input pixels, scores (B, K)."""
        if tuple(images.shape[-2:]) != self.input_shape:
            raise ValueError(
                f'images of size {tuple(images.shape[-2:])} given to a '
                f'wrapper built for {self.input_shape}')
        det = self.detector
        inputs = (images.float() - self.mean) / self.std
        if any(self.pad):
            inputs = F.pad(inputs, self.pad, value=self.pad_value)
        feats = det.extract_feat(inputs)
        logits, boxes = det.bbox_head.last_layer_predictions(
            **det.forward_transformer(feats, None))
        scores, index = logits.sigmoid().flatten(1).topk(self.topk, dim=1)
        labels = index % self.num_classes
        query_index = torch.div(index, self.num_classes, rounding_mode='floor')
        boxes = boxes.gather(1, query_index.unsqueeze(-1).expand(-1, -1, 4))
        boxes = bbox_cxcywh_to_xyxy(boxes) * self.box_scale
        boxes = torch.minimum(boxes.clamp(min=0), self.box_max)
        return labels, boxes, scores


def export_onnx(model: nn.Module,
                out: str,
                input_shape: Sequence[int],
                batch_size: int = 1,
                opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False,
                simplify: bool = False,
                max_per_img: Optional[int] = None) -> dict:
    """Export a detector to an end-to-end ONNX graph (see module doc).

    The model is deep-copied, so the caller's model is left untouched; the
    copy has its deploy paths applied (:func:`switch_to_deploy`).

    Args:
        model (RTDETR): Detector.
        out (str): Output ``.onnx`` path (its folder is created).
        input_shape (tuple[int, int]): Fixed (H, W) of the graph input.
        batch_size (int): Batch size traced (and fixed unless
            ``dynamic_batch``).
        opset (int): ONNX opset, >= 16 (``grid_sample``).
        dynamic_batch (bool): Make the batch dimension dynamic.
        simplify (bool): Run onnxsim on the exported graph.
        max_per_img (int, optional): Top-k detections per image.

    Returns:
        dict: ``path``, ``input_shape``, ``topk`` and ``deployed`` (names of
        the modules switched to their deploy path).
    """
    if opset < MIN_OPSET:
        raise ValueError(
            f'opset {opset} is too old: multi-scale deformable attention '
            f'exports grid_sample, which needs opset >= {MIN_OPSET}')
    if len(input_shape) != 2 or min(input_shape) < 1:
        raise ValueError(f'input_shape must be (H, W), got {input_shape}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if simplify:
        try:
            import onnxsim
        except ImportError as err:
            raise ImportError(
                '--simplify needs onnxsim: pip install onnxsim') from err
    model = copy.deepcopy(model).cpu().eval()
    deployed = switch_to_deploy(model)
    wrapper = RTDETROnnxWrapper(model, input_shape, max_per_img).eval()
    images = torch.randint(
        0, 256, (batch_size, 3, *input_shape),
        generator=torch.Generator().manual_seed(0)).float()
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: 'batch'}
                        for name in INPUT_NAMES + OUTPUT_NAMES}
    with torch.no_grad(), warnings.catch_warnings():
        # Shapes become constants in the traced graph by design (fixed H, W).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(
            wrapper, (images, ), out, dynamo=False,
            input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            opset_version=opset, dynamic_axes=dynamic_axes,
            do_constant_folding=True)
    if simplify:
        import onnx
        onnx_model = onnx.load(out)
        simplified, ok = onnxsim.simplify(onnx_model)
        if not ok:
            raise RuntimeError(f'onnxsim could not validate the simplified '
                               f'graph of {out}')
        onnx.save(simplified, out)
    return dict(path=out, input_shape=tuple(input_shape),
                topk=wrapper.topk, deployed=deployed)


def create_ort_session(
        path: str,
        num_threads: Optional[int] = None) -> 'ort.InferenceSession':
    """An ONNX Runtime CPU session for ``path`` (all graph optimisations)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        options.intra_op_num_threads = num_threads
    return ort.InferenceSession(
        path, sess_options=options, providers=['CPUExecutionProvider'])


def run_ort(session: 'ort.InferenceSession',
            images: Union[np.ndarray, Tensor]) -> Tuple[np.ndarray, ...]:
    """Run ``session`` on float RGB ``images`` (B, 3, H, W) in [0, 255]
    (numpy or tensor); returns ``(labels, boxes, scores)`` numpy arrays."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    return tuple(session.run(
        list(OUTPUT_NAMES),
        {INPUT_NAMES[0]: np.ascontiguousarray(images, dtype=np.float32)}))


def torch_predict(model: nn.Module, image_bgr: np.ndarray) -> Detections:
    """Reference detections with mmdet's own path: ``model.predict`` on one
    BGR uint8 image (H, W, 3) through the data pre-processor, no rescale.

    Returns:
        tuple[np.ndarray]: labels (K,), boxes (K, 4), scores (K,).
    """
    height, width = image_bgr.shape[:2]
    sample = DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width),
        scale_factor=(1.0, 1.0)))
    inputs = torch.from_numpy(
        np.ascontiguousarray(image_bgr.transpose(2, 0, 1)))
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=[inputs], data_samples=[sample]), training=False)
        result = model.predict(data['inputs'], data['data_samples'],
                               rescale=False)[0].pred_instances
    return (result.labels.numpy(), result.bboxes.numpy(),
            result.scores.numpy())


def check_onnx(model: nn.Module,
               onnx_path: str,
               image_path: str,
               input_shape: Tuple[int, int],
               atol: float = 1e-3) -> dict:
    """Compare an exported graph (ONNX Runtime) with ``model.predict``
    (PyTorch) on one image file, resized to ``input_shape`` (H, W).

    Returns:
        dict: the statistics of :func:`compare_detections`.

    Raises:
        ValueError: ``image_path`` cannot be read as an image.
    """
    height, width = input_shape
    image = mmcv.imread(image_path)
    if image is None:
        raise ValueError(f'cannot read image {image_path}')
    image = mmcv.imresize(image, (width, height))
    reference = torch_predict(model, image)
    session = create_ort_session(onnx_path)
    labels, boxes, scores = run_ort(session, bgr_to_onnx_input(image))
    return compare_detections(reference, (labels[0], boxes[0], scores[0]),
                              input_shape, atol=atol)


def bgr_to_onnx_input(image_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> the graph input: float32 RGB (1, 3, H, W)."""
    return np.ascontiguousarray(
        image_bgr[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


def compare_detections(reference: Detections,
                       candidate: Detections,
                       image_shape: Tuple[int, int],
                       atol: float = 1e-3) -> dict:
    """Match two sets of detections and measure their differences.

    Detections are paired one-to-one (Hungarian matching on the largest of
    the normalised box difference and the score difference, only within a
    class). Boxes are compared in units of the image size (pixels / W or
    H), scores absolutely. Detections whose score in both sets is within
    ``atol`` of the lowest kept score may fall on either side of the top-k
    cut and are allowed to stay unmatched.

    Args:
        reference, candidate (tuple[np.ndarray]): ``(labels, boxes,
            scores)`` for one image.
        image_shape (tuple[int, int]): (H, W).
        atol (float): Tolerance.

    Returns:
        dict: ``max_box_diff`` and ``max_score_diff`` over the matched
        pairs that involve a detection above the cut, ``num_checked``
        (reference detections above the cut), ``num_unmatched`` (detections
        above the cut without a partner within ``atol``) and ``ok``.
    """
    from scipy.optimize import linear_sum_assignment
    ref_labels, ref_boxes, ref_scores = (np.asarray(v) for v in reference)
    can_labels, can_boxes, can_scores = (np.asarray(v) for v in candidate)
    height, width = image_shape
    norm = np.array([width, height, width, height], dtype=np.float64)
    box_diff = np.abs(ref_boxes[:, None].astype(np.float64) -
                      can_boxes[None].astype(np.float64)) / norm
    box_diff = box_diff.max(-1)
    score_diff = np.abs(ref_scores[:, None].astype(np.float64) -
                        can_scores[None].astype(np.float64))
    cost = np.maximum(box_diff, score_diff)
    cost[ref_labels[:, None] != can_labels[None]] = 1e6
    rows, cols = linear_sum_assignment(cost)
    cut = max(ref_scores.min(initial=0.0), can_scores.min(initial=0.0))
    must_ref = ref_scores > cut + atol
    must_can = can_scores > cut + atol
    good_ref = np.zeros(len(ref_scores), bool)
    good_can = np.zeros(len(can_scores), bool)
    max_box, max_score = 0.0, 0.0
    for r, c in zip(rows, cols):
        same_label = ref_labels[r] == can_labels[c]
        if same_label and (must_ref[r] or must_can[c]):
            max_box = max(max_box, float(box_diff[r, c]))
            max_score = max(max_score, float(score_diff[r, c]))
        if same_label and cost[r, c] <= atol:
            good_ref[r] = good_can[c] = True
    num_bad = int((must_ref & ~good_ref).sum() + (must_can & ~good_can).sum())
    return dict(max_box_diff=max_box, max_score_diff=max_score,
                num_checked=int(must_ref.sum()), num_unmatched=num_bad,
                ok=num_bad == 0)
