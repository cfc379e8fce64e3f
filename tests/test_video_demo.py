"""rtdetr_zoo.video.annotate_video and its command line demo/video_demo.py:
a short video made here from raccoon frames, an image folder and an ONNX
graph in; an annotated video or images out; errors that name the value."""
import importlib.util
import os.path as osp
import subprocess
import sys

import cv2
import mmcv
import numpy as np
import pytest
import torch

from rtdetr_zoo.apis import load_detector
from rtdetr_zoo.video import (FrameIOError, OnnxFramePredictor,
                              TorchFramePredictor, annotate_video)

from . import test_demo

CONFIG, REPO_ROOT = test_demo.CONFIG, test_demo.REPO_ROOT
# The random-weight checkpoint of test_demo (TINY model, raccoon meta).
checkpoint = test_demo.checkpoint

RACCOON_IMAGES = [
    osp.join(REPO_ROOT, 'data', 'raccoon', 'images', f'raccoon-{i}.jpg')
    for i in range(1, 7)
]
FRAME_SIZE = (160, 120)  # (W, H) of the frames made here
VIDEO_FPS = 10
SIZE = 128  # the detector's input, instead of the config's 320
# The checkpoint fixture's model (test_demo.TINY) at SIZE x SIZE.
SMALL = {
    'model.num_queries': 20,
    'model.decoder.num_layers': 1,
    'model.test_cfg.max_per_img': 20,
    'model.neck.eval_spatial_size': (SIZE, SIZE),
    'test_dataloader.dataset.pipeline.1.scale': (SIZE, SIZE),
}
SMALL_OPTIONS = [f'{key}={value}'.replace(' ', '')
                 for key, value in SMALL.items()]


def raccoon_frames():
    """The six raccoon images, resized to FRAME_SIZE (BGR uint8)."""
    return [mmcv.imresize(mmcv.imread(path), FRAME_SIZE)
            for path in RACCOON_IMAGES]


def read_video(path):
    """All frames of a video file, its fps, and its container and codec
    from the file's bytes (``'mp4'`` / ``'avi'``; a FourCC tag)."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    capture.release()
    data = open(path, 'rb').read()
    container = ('mp4' if data[4:8] == b'ftyp' else
                 'avi' if data[:4] == b'RIFF' and data[8:12] == b'AVI '
                 else None)
    codec = next((tag for tag in ('mp4v', 'XVID', 'MJPG')
                  if tag.encode() in data), None)
    return frames, fps, (container, codec)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    """A 6-frame mp4 made with OpenCV's VideoWriter from raccoon frames."""
    path = str(tmp_path_factory.mktemp('video') / 'raccoons.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'),
                             VIDEO_FPS, FRAME_SIZE)
    for frame in raccoon_frames():
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture()
def frame_folder(tmp_path):
    """Three raccoon frames as lossless PNGs (exact comparisons)."""
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i, frame in enumerate(raccoon_frames()[:3]):
        mmcv.imwrite(frame, str(folder / f'frame_{i}.png'))
    (folder / 'notes.txt').write_text('not an image')
    return folder


def load_demo_module():
    """demo/video_demo.py as a module (its main() runs in this process)."""
    spec = importlib.util.spec_from_file_location(
        'video_demo', osp.join(REPO_ROOT, 'demo', 'video_demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_video_in_annotated_video_out(checkpoint, video, tmp_path):
    out = tmp_path / 'out' / 'drawn.mp4'
    # -X importtime: Python lists every module it imports on stderr.
    done = subprocess.run(
        [sys.executable, '-X', 'importtime', 'demo/video_demo.py', video,
         CONFIG, checkpoint, '--out', str(out), '--score-thr', '0.0',
         '--cfg-options', *SMALL_OPTIONS], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600)
    imported = {line.rsplit('|', 1)[-1].strip()
                for line in done.stderr.splitlines()
                if line.startswith('import time:')}
    stderr = '\n'.join(line for line in done.stderr.splitlines()
                       if not line.startswith('import time:'))
    assert done.returncode == 0, stderr[-3000:]
    # The PyTorch path never imports ONNX or ONNX Runtime.
    assert 'mmdet' in imported
    assert not {'onnx', 'onnxruntime'} & imported
    output = done.stdout + stderr
    assert 'ETA' in output  # the progress bar
    assert (f'6 frames from video file {video}, mean ' in output
            and f'FPS (PyTorch), written to {out}' in output), output[-2000:]
    inputs, _, _ = read_video(video)
    drawn, fps, fourcc = read_video(out)
    assert len(drawn) == len(inputs) == 6
    assert fps == VIDEO_FPS and fourcc == ('mp4', 'mp4v')
    for before, after in zip(inputs, drawn):
        assert after.shape == before.shape == (FRAME_SIZE[1], FRAME_SIZE[0],
                                               3)
        # The FPS label in the top-left corner: white text on black.
        label = after[:16, :50]
        assert (label < 60).all(-1).mean() > 0.5
        assert (label > 180).all(-1).any()
        # Boxes elsewhere: changes far above the codec's noise.
        diff = np.abs(after.astype(int) - before.astype(int)).max(-1)
        assert (diff[20:] > 60).mean() > 0.01


def test_folder_in_folder_out(checkpoint, frame_folder, tmp_path):
    frames = raccoon_frames()[:3]
    names = ['frame_0.png', 'frame_1.png', 'frame_2.png']
    out = tmp_path / 'boxes'
    summary = annotate_video(str(frame_folder), CONFIG, checkpoint, str(out),
                             score_thr=0.0, cfg_options=SMALL)
    assert summary == dict(frames=3, mean_fps=summary['mean_fps'],
                           out=str(out), backend='PyTorch')
    assert summary['mean_fps'] > 0
    assert sorted(p.name for p in out.iterdir()) == names
    for name, frame in zip(names, frames):
        drawn = mmcv.imread(str(out / name))
        assert drawn.shape == frame.shape
        assert (drawn[20:] != frame[20:]).any(-1).mean() > 0.01  # boxes

    # Nothing above the threshold: only the FPS label is drawn, in the
    # top-left corner (PNG: exact). Under bfloat16 autocast, two frames.
    out = tmp_path / 'label_only'
    summary = annotate_video(str(frame_folder), CONFIG, checkpoint, str(out),
                             score_thr=1.0, cfg_options=SMALL, bf16=True,
                             max_frames=2)
    assert summary['frames'] == 2
    assert summary['backend'] == 'PyTorch, bfloat16 autocast'
    assert sorted(p.name for p in out.iterdir()) == names[:2]
    for name, frame in zip(names, frames):
        if name in names[:2]:
            changed = np.argwhere((mmcv.imread(str(out / name)) != frame)
                                  .any(-1))
            assert len(changed) > 50
            assert changed[:, 0].max() < 20 and changed[:, 1].max() < 60


def test_onnx_backend(checkpoint, video, tmp_path):
    from rtdetr_zoo.deploy import compare_detections, export_onnx
    model = load_detector(CONFIG, checkpoint, SMALL)
    graph = str(tmp_path / 'tiny.onnx')
    export_onnx(model, graph, (SIZE, SIZE))

    # Per frame (160x120, resized to the graph's 128x128 and back), the
    # graph's detections are the PyTorch detector's.
    onnx_predictor = OnnxFramePredictor(graph, CONFIG, SMALL)
    assert onnx_predictor.dataset_meta['classes'] == ('raccoon', )
    torch_predictor = TorchFramePredictor(CONFIG, checkpoint, SMALL)
    frame = raccoon_frames()[0]
    expected = torch_predictor(frame).pred_instances
    got = onnx_predictor(frame).pred_instances
    assert got.bboxes.dtype == torch.float32 and len(got.bboxes) == 20
    assert got.bboxes[:, 2].max() > SIZE  # in frame pixels (160 wide)
    stats = compare_detections(
        (expected.labels.numpy(), expected.bboxes.numpy(),
         expected.scores.numpy()),
        (got.labels.numpy(), got.bboxes.numpy(), got.scores.numpy()),
        frame.shape[:2])
    assert stats['ok'], stats

    out = tmp_path / 'onnx.avi'
    demo = load_demo_module()
    assert demo.main([video, CONFIG, '--onnx', graph, '--out', str(out),
                      '--score-thr', '0.0', '--threads', '1',
                      '--cfg-options', *SMALL_OPTIONS]) == 0
    drawn, fps, fourcc = read_video(out)
    assert len(drawn) == 6 and fps == VIDEO_FPS and fourcc == ('avi', 'XVID')
    assert drawn[0].shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)

    # A graph exported at another size than the config's test resize.
    with pytest.raises(ValueError, match=r'128x128 .* 320x320'):
        OnnxFramePredictor(graph, CONFIG)


def test_errors_name_the_value(checkpoint, video, frame_folder,
                               tmp_path, capsys):
    def run(source, out, **kwargs):
        kwargs.setdefault('checkpoint', checkpoint)
        return annotate_video(source, CONFIG, out=out, cfg_options=SMALL,
                              **kwargs)

    out = str(tmp_path / 'out.mp4')
    missing = str(tmp_path / 'missing.mp4')
    with pytest.raises(FileNotFoundError, match='video file, camera index '
                       f'or image folder not found: {missing}'):
        run(missing, out)
    with pytest.raises(FrameIOError, match='cannot open camera 99'):
        run('99', out)
    not_a_video = tmp_path / 'notes.mp4'
    not_a_video.write_text('not a video')
    with pytest.raises(FrameIOError,
                       match=f'cannot read video file {not_a_video}'):
        run(str(not_a_video), out)
    with pytest.raises(ValueError, match=r"unknown output extension '\.mkv' "
                       r'in .*out\.mkv'):
        run(video, str(tmp_path / 'out.mkv'))
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    with pytest.raises(FrameIOError, match='cannot create the output folder '
                       f'{a_file}'):
        run(video, str(a_file / 'out.mp4'))
    with pytest.raises(ValueError, match='is the input folder'):
        run(str(frame_folder), str(frame_folder))
    with pytest.raises(ValueError, match='not both or neither'):
        run(video, out, checkpoint=None)
    with pytest.raises(ValueError, match='bf16 and device'):
        run(video, out, onnx=str(tmp_path / 'm.onnx'), checkpoint=None,
            bf16=True)
    assert not osp.exists(out)

    demo = load_demo_module()
    for argv, message in [
        ([missing, CONFIG, checkpoint, '--out', out],
         f'video file, camera index or image folder not found: {missing}'),
        ([video, CONFIG, checkpoint, '--out', 'x.mkv'],
         "unknown output extension '.mkv'"),
        ([video, CONFIG, '--out', out], 'give a CHECKPOINT or --onnx'),
        ([video, CONFIG, checkpoint], 'give --out'),
        ([video, CONFIG, '--onnx', missing, '--out', out],
         f'ONNX file not found: {missing}'),
    ]:
        with pytest.raises(SystemExit) as exited:
            demo.main(argv)
        assert exited.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match='error: cannot open camera 99'):
        demo.main(['99', CONFIG, checkpoint, '--out', out])
