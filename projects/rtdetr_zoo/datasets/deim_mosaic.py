"""DEIM's mosaic (dense one-to-one matching, the data side) as mmdet
transforms."""
import random
from typing import List, Optional, Sequence

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform, Compose
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes


@TRANSFORMS.register_module()
class DEIMMosaic(BaseTransform):
    """The mosaic of DEIM (Huang et al., CVPR 2025; the official ``Mosaic``
    of ``engine/data/transforms/mosaic.py`` with ``use_cache: False``, the
    setting of ``configs/base/rt_deim.yml``): the image and three random
    images of the dataset, each resized so that its shorter side is
    ``img_scale``, are pasted at the top left of the four quadrants of a
    canvas twice the largest width and height (filled with 0), and one
    random affine transform (rotation, translation, scale about the centre,
    same canvas size, nearest-neighbour) moves the canvas and its boxes.

    Used inside mmdet's ``MultiImageMixDataset``, which loads the three
    images :meth:`get_indexes` picks (the wrapped dataset's pipeline only
    loads the image and its annotations). Whether a sample gets a mosaic is
    drawn in :meth:`get_indexes`, so the three images are only loaded for a
    mosaic: ``random.random() <= prob`` (DEIM's ``mosaic_prob`` in its
    epoch policy), then ``random.choices`` of three indices, then the affine
    parameters from torch's generator in torchvision's ``RandomAffine``, in
    the official order. A mosaic sets ``results['mosaic']`` so that
    :class:`SkipAfterMosaic` leaves out the zoom-out and IoU crop for that
    sample (DEIM never applies both). Boxes are moved and clamped to the
    canvas, none is dropped here: the pipeline's ``FilterAnnotations``
    removes the degenerate ones (the official ``SanitizeBoundingBoxes``).

    Required keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``, ``mix_results`` (three such results, or none).
    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``,
    ``gt_bboxes_labels``, ``gt_ignore_flags``. Added key: ``mosaic``.

    Args:
        img_scale (int): Shorter side of each resized image (the official
            ``output_size``). Defaults to 320.
        rotation_range (float): Rotation in degrees, uniform in
            [-range, range]. Defaults to 10.
        translation_range (Sequence[float]): Largest translation as a
            fraction of the canvas width and height. Defaults to
            (0.1, 0.1).
        scaling_range (Sequence[float]): Scale range. Defaults to
            (0.5, 1.5).
        fill_value (int): Fill of the canvas and of the affine transform's
            border. Defaults to 0.
        prob (float): Probability of a mosaic. Defaults to 0.5.
    """

    def __init__(self, img_scale: int = 320, rotation_range: float = 10,
                 translation_range: Sequence[float] = (0.1, 0.1),
                 scaling_range: Sequence[float] = (0.5, 1.5),
                 fill_value: int = 0, prob: float = 0.5) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'DEIMMosaic: prob must be in [0, 1], got '
                             f'{prob}')
        if img_scale <= 0:
            raise ValueError(f'DEIMMosaic: img_scale must be positive, got '
                             f'{img_scale}')
        self.img_scale = img_scale
        self.prob = prob
        self.fill_value = fill_value
        # torchvision's v2 transforms import torch._dynamo (a second at
        # start-up), so they load when a mosaic is built, not with the
        # package.
        from torchvision.transforms import v2
        self.affine = v2.RandomAffine(
            degrees=rotation_range, translate=tuple(translation_range),
            scale=tuple(scaling_range), fill=fill_value)

    def get_indexes(self, dataset) -> List[int]:
        """Three random indices of ``dataset`` for a mosaic, or none (the
        sample keeps its image) with probability ``1 - prob``."""
        if random.random() > self.prob:
            return []
        return random.choices(range(len(dataset)), k=3)

    def _resized(self, results: dict) -> tuple:
        """The image resized so that its shorter side is ``img_scale``
        (torchvision's ``Resize(img_scale)`` sizes) and its boxes."""
        img = results['img']
        height, width = img.shape[:2]
        short, long = sorted((height, width))
        new_long = int(self.img_scale * long / short)
        new_h, new_w = ((self.img_scale, new_long) if height <= width else
                        (new_long, self.img_scale))
        img = mmcv.imresize(img, (new_w, new_h))
        boxes = results['gt_bboxes'].tensor.clone()
        boxes[:, 0::2] *= new_w / width
        boxes[:, 1::2] *= new_h / height
        return img, boxes

    def transform(self, results: dict) -> dict:
        """The mosaic of ``results`` and its three ``mix_results``; the
        results unchanged (``mosaic`` False) without them."""
        mix_results = results.pop('mix_results', None) or []
        results['mosaic'] = False
        if not mix_results:
            return results
        if len(mix_results) != 3:
            raise ValueError(f'DEIMMosaic needs 3 mix_results, got '
                             f'{len(mix_results)}')
        parts = [results] + list(mix_results)
        resized = [self._resized(part) for part in parts]
        max_h = max(img.shape[0] for img, _ in resized)
        max_w = max(img.shape[1] for img, _ in resized)
        canvas = np.full((2 * max_h, 2 * max_w, 3), self.fill_value,
                         dtype=results['img'].dtype)
        boxes = []
        for index, (img, part_boxes) in enumerate(resized):
            x0, y0 = (index % 2) * max_w, (index // 2) * max_h
            canvas[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
            boxes.append(part_boxes + part_boxes.new_tensor([x0, y0] * 2))
        from torchvision import tv_tensors
        image = tv_tensors.Image(
            torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1))))
        boxes = tv_tensors.BoundingBoxes(
            torch.cat(boxes), format='XYXY', canvas_size=canvas.shape[:2])
        image, boxes = self.affine(image, boxes)
        results['img'] = np.ascontiguousarray(
            image.permute(1, 2, 0).numpy())
        results['img_shape'] = results['img'].shape[:2]
        results['gt_bboxes'] = HorizontalBoxes(boxes.as_subclass(
            torch.Tensor).float())
        results['gt_bboxes_labels'] = np.concatenate(
            [part['gt_bboxes_labels'] for part in parts])
        results['gt_ignore_flags'] = np.concatenate(
            [part['gt_ignore_flags'] for part in parts])
        results['mosaic'] = True
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(img_scale={self.img_scale}, '
                f'affine={self.affine}, fill_value={self.fill_value}, '
                f'prob={self.prob})')


@TRANSFORMS.register_module()
class SkipAfterMosaic(BaseTransform):
    """Runs ``transforms`` on a sample unless :class:`DEIMMosaic` made it
    a mosaic (``results['mosaic']``): DEIM's epoch policy never applies
    the zoom-out and IoU crop to a mosaic (``stop_epoch_forward`` of the
    official ``engine/data/transforms/container.py``).

    Args:
        transforms (list[dict]): The transforms, e.g. ``Expand`` and a
            ``RandomApply`` of ``MinIoURandomCrop``.
    """

    def __init__(self, transforms: List[dict]) -> None:
        # Built from mmdet's registry, whatever the default scope.
        self.transforms = Compose([
            TRANSFORMS.build(t) if isinstance(t, dict) else t
            for t in transforms])

    def transform(self, results: dict) -> Optional[dict]:
        if results.get('mosaic', False):
            return results
        return self.transforms(results)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.transforms})'
