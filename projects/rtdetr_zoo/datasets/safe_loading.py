"""Image loading that names the bad file, or skips it with a logged message."""
import logging
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log

from mmdet.registry import TRANSFORMS

JPEG_SOI = b'\xff\xd8'
JPEG_EOI = b'\xff\xd9'


class BadImageError(ValueError):
    """An image file that is missing, unreadable or of the wrong size."""


def jpeg_is_truncated(data: bytes) -> bool:
    """Whether JPEG bytes lack their end-of-image marker.

    Decoders fill a truncated JPEG with grey and only print a warning, so a
    cut-off download would silently train on a half-grey image. Inside the
    entropy-coded data ``0xFF`` is always followed by ``0x00`` or a restart
    marker, so an ``FFD9`` in the second half of the file is the real end of
    the image (one near the start may be an EXIF thumbnail's).
    """
    return data[:2] == JPEG_SOI and data.rfind(JPEG_EOI) < len(data) // 2


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` with clear errors for bad image files.

    A missing, empty, undecodable or truncated (JPEG without its end marker)
    file, or an image whose size differs from the ``width``/``height`` of its
    annotation (so its boxes would not match the pixels), either raises
    :class:`BadImageError` (``FileNotFoundError`` for a missing file) naming
    the file, the image id and the reason, or, with ``on_error='skip'``, logs
    a warning with the same text and returns ``None``: mmengine's
    ``BaseDataset`` then loads another random sample in its place (training
    only; a test-mode dataset raises on ``None``).

    Args:
        on_error (str): ``'raise'`` (default) or ``'skip'``.
        check_size (bool): Compare the decoded size with the annotation's
            ``height``/``width`` when the dataset provides them. Defaults to
            True.
        **kwargs: :class:`mmcv.transforms.LoadImageFromFile` arguments
            (``color_type``, ``imdecode_backend``, ``backend_args``, ...).
    """

    def __init__(self,
                 on_error: str = 'raise',
                 check_size: bool = True,
                 **kwargs) -> None:
        if on_error not in ('raise', 'skip'):
            raise ValueError(
                f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if kwargs.get('ignore_empty'):
            raise ValueError("use on_error='skip' instead of ignore_empty")
        if kwargs.get('file_client_args') is not None:
            raise ValueError('use backend_args instead of file_client_args')
        super().__init__(**kwargs)
        self.on_error = on_error
        self.check_size = check_size

    def _read(self, filename):
        if not fileio.exists(filename, backend_args=self.backend_args):
            raise FileNotFoundError('image file not found')
        data = fileio.get(filename, backend_args=self.backend_args)
        if not data:
            raise BadImageError('image file is empty')
        if jpeg_is_truncated(data):
            raise BadImageError('JPEG file is truncated (no end-of-image '
                                'marker)')
        try:
            img = mmcv.imfrombytes(data, flag=self.color_type,
                                   backend=self.imdecode_backend)
        except Exception as err:  # the decoders raise many types
            raise BadImageError(f'cannot be decoded ({err})') from err
        if img is None or img.size == 0:
            raise BadImageError('cannot be decoded (corrupt or not an image)')
        return img

    def _check_size(self, img, results):
        want_h, want_w = results.get('height'), results.get('width')
        if not self.check_size or want_h is None or want_w is None:
            return
        h, w = img.shape[:2]
        if (h, w) == (want_h, want_w):
            return
        msg = (f'image is {w}x{h} (width x height) but its annotation says '
               f'{want_w}x{want_h}, so its boxes would not match the pixels; '
               'fix width/height in the annotation file')
        if (h, w) == (want_w, want_h):
            msg += (" (swapped: an EXIF orientation tag rotates the image on "
                    "load; set color_type='color_ignore_orientation' if the "
                    'boxes were drawn on the unrotated image)')
        raise BadImageError(msg)

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']`` into ``results['img']`` (H, W, 3)
        with ``img_shape`` and ``ori_shape``; None for a skipped file."""
        filename = results['img_path']
        try:
            img = self._read(filename)
            self._check_size(img, results)
        except (BadImageError, FileNotFoundError) as err:
            where = f'{filename} (img_id {results.get("img_id", "?")})'
            if self.on_error == 'skip':
                print_log(f'skipping training sample {where}: {err}',
                          logger='current', level=logging.WARNING)
                return None
            raise type(err)(f'{where}: {err}') from err
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(on_error={self.on_error!r}, '
                f'check_size={self.check_size}, '
                f'color_type={self.color_type!r}, '
                f'imdecode_backend={self.imdecode_backend!r}, '
                f'backend_args={self.backend_args})')
