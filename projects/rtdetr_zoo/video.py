"""Detection on a video file, a camera or an image folder
(``demo/video_demo.py``).

:func:`annotate_video` runs a detector frame by frame:

    frames: a video file (``cv2.VideoCapture``), a camera index (``0``,
      ``1``, ... as in OpenCV) or an image folder (sorted by name); each
      frame BGR uint8 (H, W, 3)
      -> a predictor, one of
         PyTorch: :func:`rtdetr_zoo.apis.load_detector`, the config's test
           pipeline and ``model.test_step`` (mmdet's ``inference_detector``),
           optionally under :func:`rtdetr_zoo.apis.bf16_autocast`;
         ONNX Runtime: the graph of :func:`rtdetr_zoo.deploy.export_onnx`
           (fp32 or INT8), the frame resized to the graph's fixed input as
           the test pipeline's ``Resize`` does, boxes scaled back;
      -> ``DetDataSample.pred_instances`` (``bboxes`` (K, 4) xyxy in frame
         pixels, ``scores`` (K,), ``labels`` (K,))
      -> mmdet's ``DetLocalVisualizer`` (boxes, class names and scores above
         ``score_thr``, the ``dataset_meta`` palette) and the frame rate of
         the loop (measured, exponentially smoothed) in the top-left corner
      -> an ``.mp4`` (mp4v) or ``.avi`` (XVID) video, or images in a folder;
         optionally a ``cv2`` window.

A progress bar with an ETA is shown when the number of frames is known (a
file, an image folder, a camera with ``max_frames``); a final log line gives
the frames, the mean frame rate and where they were written. The ONNX
Runtime modules are imported in the ONNX branch only.
"""
import copy
import math
import os
import os.path as osp
import sys
import time
from typing import Iterator, Optional, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from mmengine.utils import ProgressBar

from mmdet.apis import inference_detector
from mmdet.registry import DATASETS
from mmdet.structures import DetDataSample
from mmdet.utils import get_test_pipeline_cfg
from mmdet.visualization import DetLocalVisualizer

from .apis import (IMAGE_EXTENSIONS, bf16_autocast, list_images, load_config,
                   load_detector)

# Output video extension -> OpenCV FourCC codec.
VIDEO_FOURCC = {'.mp4': 'mp4v', '.avi': 'XVID'}
# Frame rate of an output video when the input has none (images, or a
# camera that does not report one).
DEFAULT_OUT_FPS = 25.0
WINDOW_NAME = 'rtdetr_zoo video demo'
_QUIT_KEYS = (27, ord('q'))  # Esc, q
# Without a progress bar (a camera), log the progress every this many frames.
_LOG_INTERVAL = 100


class FrameIOError(OSError):
    """A frame source or output that cannot be opened, read or written."""


def output_kind(out: str) -> str:
    """``'video'`` for a path ending in a :data:`VIDEO_FOURCC` extension,
    ``'images'`` for a folder (an existing one, or a path without an
    extension).

    Raises:
        ValueError: Any other extension (it is named).
    """
    extension = osp.splitext(out)[1].lower()
    if osp.isdir(out) or not extension:
        return 'images'
    if extension in VIDEO_FOURCC:
        return 'video'
    raise ValueError(
        f'unknown output extension {extension!r} in {out}: write a video '
        f'({", ".join(VIDEO_FOURCC)}) or give a folder for images')


class FrameSource:
    """The frames of a video file, a camera or images.

    Args:
        source (str | int): A camera index (an int or a string of digits,
            as ``cv2.VideoCapture`` takes it), an image folder (its images
            by extension, sorted by name), an image file, or a video file.
        max_frames (int, optional): Stop after this many frames.

    Attributes:
        kind (str): ``'camera'``, ``'images'`` or ``'video'``.
        fps (float | None): The frame rate OpenCV reports for a video or a
            camera (``None`` for images, or when it reports none).
        num_frames (int | None): The frames to expect: the images, a
            video's ``CAP_PROP_FRAME_COUNT`` (an estimate for some
            containers), at most ``max_frames``; ``None`` for a camera
            without ``max_frames``.

    Iterating yields ``(name, frame)``: a file name for the frame's image
    output (an image's own name; ``<video>_000000.jpg``,
    ``camera0_000000.jpg``, ... otherwise) and the frame, BGR uint8
    (H, W, 3).

    Raises:
        FileNotFoundError: ``source`` is neither a camera index nor an
            existing path, or is a folder without images.
        FrameIOError: A video OpenCV cannot decode, a camera that cannot be
            opened.
    """

    def __init__(self, source: Union[str, int],
                 max_frames: Optional[int] = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f'max_frames must be >= 1, got {max_frames}')
        self.source = str(source)
        self.max_frames = max_frames
        self.capture = None
        self.images = None
        self.fps = None
        num_frames = None
        if self.source.isdigit():
            self.kind = 'camera'
            self.prefix = f'camera{self.source}'
            self.capture = cv2.VideoCapture(int(self.source))
            if not self.capture.isOpened():
                raise FrameIOError(
                    f'cannot open camera {self.source} '
                    f'(cv2.VideoCapture({self.source}) failed): is it '
                    f'connected and not used by another program?')
        elif not osp.exists(self.source):
            raise FileNotFoundError(f'video file, camera index or image '
                                    f'folder not found: {self.source}')
        elif (osp.isdir(self.source)
              or self.source.lower().endswith(IMAGE_EXTENSIONS)):
            self.kind = 'images'
            self.images = list_images(self.source)
            num_frames = len(self.images)
        else:
            self.kind = 'video'
            self.prefix = osp.splitext(osp.basename(self.source))[0]
            self.capture = cv2.VideoCapture(self.source)
            if not self.capture.isOpened():
                raise FrameIOError(
                    f'cannot read video file {self.source}: OpenCV cannot '
                    f'decode it (not a video, or a codec its FFmpeg lacks)')
            count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
            num_frames = count if count > 0 else None
        if self.capture is not None:
            fps = self.capture.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if math.isfinite(fps) and fps > 0 else None
        if max_frames is not None:
            num_frames = (max_frames if num_frames is None else
                          min(num_frames, max_frames))
        self.num_frames = num_frames

    def describe(self) -> str:
        """The source in words, for logs."""
        if self.kind == 'camera':
            return f'camera {self.source}'
        if self.kind == 'images':
            return f'{len(self.images)} image(s) of {self.source}'
        return f'video file {self.source}'

    def __iter__(self) -> Iterator[Tuple[str, np.ndarray]]:
        index = 0
        while self.max_frames is None or index < self.max_frames:
            if self.images is not None:
                if index >= len(self.images):
                    return
                path = self.images[index]
                frame = mmcv.imread(path)
                if frame is None:
                    raise FrameIOError(f'cannot read image {path}')
                yield osp.basename(path), frame
            else:
                ok, frame = self.capture.read()
                if not ok:
                    if index == 0:
                        raise FrameIOError(
                            f'{self.describe()} gave no frame OpenCV can '
                            f'decode')
                    return
                yield f'{self.prefix}_{index:06d}.jpg', frame
            index += 1

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()

    def __enter__(self) -> 'FrameSource':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class FrameWriter:
    """Writes frames to a video (codec by extension, :data:`VIDEO_FOURCC`)
    or as images into a folder (see :func:`output_kind`).

    The output folder is created at construction, the video opened at the
    first frame (its size is the first frame's; later frames of another
    size are resized to it, with one warning).

    Args:
        out (str): ``.mp4`` / ``.avi`` file, or a folder.
        fps (float): Frame rate of a video.
        fourcc (str, optional): A four-letter OpenCV codec instead of the
            extension's (e.g. ``MJPG`` for ``.avi``).

    Raises:
        ValueError: An unknown extension, a ``fourcc`` that is not four
            characters.
        FrameIOError: A folder that cannot be created or written, a video
            OpenCV cannot open for writing, an image it cannot write.
    """

    def __init__(self, out: str, fps: float = DEFAULT_OUT_FPS,
                 fourcc: Optional[str] = None) -> None:
        self.out = out
        self.kind = output_kind(out)
        extension = osp.splitext(out)[1].lower()
        self.fourcc = fourcc or VIDEO_FOURCC.get(extension)
        if self.kind == 'video' and len(self.fourcc) != 4:
            raise ValueError(f'a FourCC codec has 4 characters, got '
                             f'{self.fourcc!r}')
        self.fps = float(fps)
        folder = out if self.kind == 'images' else osp.dirname(
            osp.abspath(out))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise FrameIOError(f'cannot create the output folder {folder} '
                               f'for {out}: {err.strerror}') from err
        if not os.access(folder, os.W_OK):
            raise FrameIOError(f'output folder {folder} is not writable')
        self.writer = None
        self.size = None
        self.num_written = 0
        self.resize_warned = False

    def write(self, name: str, frame: np.ndarray) -> None:
        """Write ``frame`` (BGR uint8 (H, W, 3)); ``name`` is its file name
        in an image folder."""
        if self.kind == 'images':
            path = osp.join(self.out, name)
            if not cv2.imwrite(path, frame):
                raise FrameIOError(f'cannot write image {path}')
        else:
            height, width = frame.shape[:2]
            if self.writer is None:
                self.size = (width, height)
                self.writer = cv2.VideoWriter(
                    self.out, cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                    self.size)
                if not self.writer.isOpened():
                    raise FrameIOError(
                        f'cannot write video {self.out}: OpenCV could not '
                        f'open it with codec {self.fourcc}')
            elif (width, height) != self.size:
                if not self.resize_warned:
                    self.resize_warned = True
                    print_log(
                        f'frame {name} is {width}x{height}, the video '
                        f'{self.out} {self.size[0]}x{self.size[1]}: frames '
                        f'of another size are resized', logger='current',
                        level='WARNING')
                frame = mmcv.imresize(frame, self.size)
            self.writer.write(frame)
        self.num_written += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def config_dataset_meta(cfg: Config, config_name: str = 'the config') -> dict:
    """Class names and palette of ``cfg``'s test dataset (its metainfo,
    built lazily as mmdet's ``init_detector`` does).

    Raises:
        ValueError: ``cfg`` has no ``test_dataloader.dataset``.
    """
    dataset_cfg = cfg.get('test_dataloader', {}).get('dataset')
    if not dataset_cfg:
        raise ValueError(f'{config_name} has no test_dataloader.dataset to '
                         f'take the class names from')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = copy.deepcopy(dataset_cfg)
    dataset_cfg['lazy_init'] = True
    metainfo = DATASETS.build(dataset_cfg).metainfo
    return dict(classes=tuple(metainfo['classes']),
                palette=metainfo.get('palette', 'random'))


class TorchFramePredictor:
    """PyTorch detection of BGR frames: :func:`load_detector`, the config's
    test pipeline with mmdet's ``LoadImageFromNDArray`` as its first step
    (built once) and ``inference_detector``, optionally under
    :func:`bf16_autocast`.

    Calling it on a frame (H, W, 3) returns a ``DetDataSample`` with
    ``pred_instances`` in frame pixels.
    """
    backend = 'PyTorch'

    def __init__(self, config: Union[str, Config], checkpoint: str,
                 cfg_options: Optional[dict] = None, device: str = 'cpu',
                 bf16: bool = False) -> None:
        self.model = load_detector(config, checkpoint, cfg_options,
                                   device=device)
        self.dataset_meta = self.model.dataset_meta
        self.device = device
        self.bf16 = bf16
        pipeline = copy.deepcopy(get_test_pipeline_cfg(self.model.cfg))
        pipeline[0].type = 'mmdet.LoadImageFromNDArray'
        self.pipeline = Compose(pipeline)
        if bf16:
            self.backend = 'PyTorch, bfloat16 autocast'

    def __call__(self, frame: np.ndarray) -> DetDataSample:
        with bf16_autocast(self.device, self.bf16):
            return inference_detector(self.model, frame,
                                      test_pipeline=self.pipeline)


class OnnxFramePredictor:
    """ONNX Runtime detection of BGR frames with a graph of
    :func:`rtdetr_zoo.deploy.export_onnx` (fp32 or INT8; fixed input
    (1, 3, H, W)).

    A frame (h, w, 3) is resized to the graph's (H, W) (``mmcv.imresize``,
    bilinear: what the test pipeline's ``Resize(keep_ratio=False)`` does),
    fed as float RGB, and the boxes are divided by the scale factors
    (W / w, H / h), as ``model.predict(..., rescale=True)`` does. Class
    names and palette come from the config's test dataset
    (:func:`config_dataset_meta`).

    Args:
        onnx_path (str): The graph.
        config (str | Config): The config it was exported from.
        cfg_options (dict, optional): Config overrides.
        num_threads (int, optional): ONNX Runtime intra-op threads.

    Raises:
        FileNotFoundError: A missing graph or config.
        ValueError: The graph's input differs from the config's test resize,
            has a fixed batch other than 1, or the config's number of
            classes differs from its class names.
    """
    backend = 'ONNX Runtime'

    def __init__(self, onnx_path: str, config: Union[str, Config],
                 cfg_options: Optional[dict] = None,
                 num_threads: Optional[int] = None) -> None:
        from .deploy.onnx_eval import (check_input_shape,
                                       check_one_image_batch,
                                       graph_input_shape)
        from .deploy.onnx_export import (bgr_to_onnx_input,
                                         create_ort_session, run_ort,
                                         test_resize_shape)
        if not osp.isfile(onnx_path):
            raise FileNotFoundError(f'ONNX file not found: {onnx_path}')
        config_name = config if isinstance(config, str) else 'the config'
        cfg = load_config(config, cfg_options)
        self.session = create_ort_session(onnx_path, num_threads)
        batch, height, width = graph_input_shape(self.session, onnx_path)
        check_one_image_batch(batch, onnx_path,
                              'video frames are run one at a time')
        check_input_shape((height, width), test_resize_shape(cfg), onnx_path,
                          config_name)
        self.input_shape = (height, width)
        self.dataset_meta = config_dataset_meta(cfg, config_name)
        num_classes = cfg.model.get('bbox_head', {}).get('num_classes')
        if num_classes not in (None, len(self.dataset_meta['classes'])):
            raise ValueError(
                f'{config_name}: bbox_head.num_classes is {num_classes} but '
                f'its test dataset has {len(self.dataset_meta["classes"])} '
                f'class names')
        self._run_ort = run_ort
        self._to_input = bgr_to_onnx_input

    def __call__(self, frame: np.ndarray) -> DetDataSample:
        height, width = self.input_shape
        frame_height, frame_width = frame.shape[:2]
        resized = mmcv.imresize(frame, (width, height))
        labels, boxes, scores = self._run_ort(self.session,
                                              self._to_input(resized))
        scale = (width / frame_width, height / frame_height)
        result = DetDataSample(metainfo=dict(
            ori_shape=(frame_height, frame_width), img_shape=(height, width),
            scale_factor=scale))
        result.pred_instances = InstanceData(
            bboxes=torch.from_numpy(
                boxes[0] / np.array(scale * 2, dtype=np.float32)),
            scores=torch.from_numpy(scores[0]),
            labels=torch.from_numpy(labels[0]))
        return result


class FpsMeter:
    """Frames per second of a loop, smoothed exponentially.

    Each :meth:`tick` ends a frame; the interval since the previous tick
    (or since construction) is averaged with weight ``momentum``.
    """

    def __init__(self, momentum: float = 0.1) -> None:
        self.momentum = momentum
        self.interval = None
        self.last = time.perf_counter()

    def tick(self) -> float:
        """End a frame; returns the smoothed frames per second."""
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        self.interval = elapsed if self.interval is None else (
            (1 - self.momentum) * self.interval + self.momentum * elapsed)
        return 1.0 / max(self.interval, 1e-9)


def draw_fps(frame: np.ndarray, fps: float) -> np.ndarray:
    """Write ``FPS <fps>`` in white on a black box in the top-left corner of
    ``frame`` (BGR uint8 (H, W, 3), in place), scaled with the frame."""
    text = f'FPS {fps:.1f}'
    scale = max(0.4, min(frame.shape[:2]) / 720)
    thickness = max(1, int(round(scale * 2)))
    (text_width, text_height), baseline = cv2.getTextSize(
        text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin = max(2, text_height // 3)
    cv2.rectangle(frame, (0, 0),
                  (text_width + 2 * margin,
                   text_height + baseline + 2 * margin), (0, 0, 0), -1)
    cv2.putText(frame, text, (margin, margin + text_height),
                cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    return frame


class FrameAnnotator:
    """Draws a frame's detections with mmdet's ``DetLocalVisualizer``
    (boxes, class names, scores above ``score_thr``; classes and palette
    from ``dataset_meta``) and the frame rate (:func:`draw_fps`)."""

    def __init__(self, dataset_meta: dict, score_thr: float = 0.3) -> None:
        self.visualizer = DetLocalVisualizer.get_instance(
            'rtdetr_zoo_video_demo')
        self.visualizer.dataset_meta = dataset_meta
        self.score_thr = score_thr

    def __call__(self, frame: np.ndarray, result: DetDataSample,
                 fps: float) -> np.ndarray:
        """``frame`` BGR uint8 (H, W, 3) -> a new annotated BGR frame."""
        self.visualizer.add_datasample(
            'frame', mmcv.bgr2rgb(frame), data_sample=result, draw_gt=False,
            show=False, pred_score_thr=self.score_thr)
        drawn = np.ascontiguousarray(
            mmcv.rgb2bgr(self.visualizer.get_image()))
        return draw_fps(drawn, fps)


def check_display() -> None:
    """Raise a :class:`FrameIOError` when no window can be shown: on Linux
    without ``DISPLAY`` / ``WAYLAND_DISPLAY`` (OpenCV's Qt would abort)."""
    if sys.platform.startswith('linux') and not (
            os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        raise FrameIOError('cannot show a window: no display (DISPLAY is not '
                           'set); write the frames to an output instead')


def show_frame(frame: np.ndarray) -> bool:
    """Show ``frame`` in the demo's window; ``True`` when the user asks to
    stop (Esc or q, or the window was closed)."""
    try:
        cv2.imshow(WINDOW_NAME, frame)
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(WINDOW_NAME,
                                       cv2.WND_PROP_VISIBLE) < 1
    except cv2.error as err:
        raise FrameIOError(f'cannot show a window: this OpenCV build has no '
                           f'GUI support ({err})') from err
    return key in _QUIT_KEYS or closed


def annotate_video(source: Union[str, int],
                   config: Union[str, Config],
                   checkpoint: Optional[str] = None,
                   out: Optional[str] = None,
                   score_thr: float = 0.3,
                   device: str = 'cpu',
                   cfg_options: Optional[dict] = None,
                   bf16: bool = False,
                   onnx: Optional[str] = None,
                   show: bool = False,
                   max_frames: Optional[int] = None,
                   out_fps: Optional[float] = None,
                   fourcc: Optional[str] = None,
                   num_threads: Optional[int] = None) -> dict:
    """Detect objects on every frame of ``source`` and draw them (see the
    module doc).

    Args:
        source (str | int): Video file, camera index or image folder
            (:class:`FrameSource`).
        config (str | Config): Detector config.
        checkpoint (str, optional): Checkpoint file or URL (PyTorch).
        out (str, optional): ``.mp4`` / ``.avi`` video, or a folder for
            images (:class:`FrameWriter`). A folder of images written from
            images keeps their names.
        score_thr (float): Draw detections with a score above this.
        device (str): Device of the PyTorch model.
        cfg_options (dict, optional): Config overrides.
        bf16 (bool): PyTorch under bfloat16 autocast
            (:func:`bf16_autocast`).
        onnx (str, optional): An exported graph to run with ONNX Runtime
            instead of a checkpoint (:class:`OnnxFramePredictor`).
        show (bool): Show the frames in a window (Esc or q stops).
        max_frames (int, optional): Stop after this many frames.
        out_fps (float, optional): Frame rate of the output video (default:
            the input's, else :data:`DEFAULT_OUT_FPS`).
        fourcc (str, optional): Codec of the output video.
        num_threads (int, optional): ONNX Runtime intra-op threads.

    Returns:
        dict: ``frames`` (number processed), ``mean_fps`` (frames per
        second of the whole loop: read, predict, draw, write), ``out`` and
        ``backend``.

    Raises:
        ValueError: Neither or both of ``checkpoint`` and ``onnx``; no
            ``out`` and no ``show``; ``bf16`` or a device other than the
            CPU with ``onnx``; an unknown output extension; an output folder
            that is the input folder.
        FileNotFoundError, FrameIOError: See :class:`FrameSource`,
            :class:`FrameWriter`, :func:`check_display`.
    """
    if (checkpoint is None) == (onnx is None):
        raise ValueError('give either a checkpoint (PyTorch) or an ONNX '
                         'graph (onnx), not both or neither')
    if onnx is not None and (bf16 or device != 'cpu'):
        raise ValueError(f'an ONNX graph runs as exported on the CPU: bf16 '
                         f'and device (here {bf16}, {device!r}) apply to the '
                         f'PyTorch backend')
    if out is None and not show:
        raise ValueError('nothing to do: give an output (out) or show=True')
    if out is not None:
        output_kind(out)
    if show:
        check_display()
    with FrameSource(source, max_frames) as frames:
        if (out is not None and frames.kind == 'images'
                and osp.isdir(frames.source) and osp.isdir(out)
                and osp.samefile(out, frames.source)):
            raise ValueError(f'the output folder {out} is the input folder: '
                             f'its images would be overwritten')
        writer = None
        if out is not None:
            writer = FrameWriter(out, out_fps or frames.fps
                                 or DEFAULT_OUT_FPS, fourcc)
        if onnx is not None:
            predictor = OnnxFramePredictor(onnx, config, cfg_options,
                                           num_threads)
        else:
            predictor = TorchFramePredictor(config, checkpoint, cfg_options,
                                            device, bf16)
        annotator = FrameAnnotator(predictor.dataset_meta, score_thr)
        expected = (f'{frames.num_frames} frames' if frames.num_frames
                    else 'frames until stopped (Ctrl-C)')
        print_log(f'{frames.describe()}: {expected} with '
                  f'{predictor.backend} -> {out or "a window"}',
                  logger='current')
        progress = ProgressBar(frames.num_frames) if frames.num_frames \
            else None
        meter = FpsMeter()
        start = time.perf_counter()
        count = 0
        try:
            for name, frame in frames:
                result = predictor(frame)
                fps = meter.tick()
                drawn = annotator(frame, result, fps)
                if writer is not None:
                    writer.write(name, drawn)
                count += 1
                if progress is not None:
                    if count <= progress.task_num:
                        progress.update()
                elif count % _LOG_INTERVAL == 0:
                    print_log(f'{count} frames, {fps:.1f} FPS',
                              logger='current')
                if show and show_frame(drawn):
                    break
        except KeyboardInterrupt:
            print_log(f'stopped (Ctrl-C) after {count} frames',
                      logger='current')
        finally:
            if writer is not None:
                writer.close()
            if show:
                cv2.destroyAllWindows()
            if progress is not None:
                progress.file.write('\n')
    elapsed = time.perf_counter() - start
    mean_fps = count / elapsed if elapsed > 0 else 0.0
    where = f'written to {out}' if out is not None else 'shown only'
    print_log(f'{count} frames from {frames.describe()}, mean {mean_fps:.1f} '
              f'FPS ({predictor.backend}), {where}', logger='current')
    return dict(frames=count, mean_fps=mean_fps, out=out,
                backend=predictor.backend)
