"""ONNX export (end-to-end, NMS-free) and ONNX Runtime parity, the
benchmark's onnxruntime backend and the model-zoo table tool."""
import os.path as osp
import sys

import mmcv
import numpy as np
import pytest
import torch

from rtdetr_zoo.deploy import (bgr_to_onnx_input, compare_detections,
                               create_ort_session, export_onnx, load_detector,
                               run_ort, switch_to_deploy, torch_predict)
from rtdetr_zoo.layers import RepVGGBlock

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMAGE = osp.join(REPO_ROOT, 'data', 'raccoon', 'images', 'raccoon-1.jpg')
sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'deploy'))
sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'analysis'))

# Small decoder and query set: the export path (query selection, refinement,
# top-k) is unchanged, the trace is quicker.
TINY = dict(model=dict(num_queries=30, decoder=dict(num_layers=1),
                       test_cfg=dict(max_per_img=30)))
TINY_OPTIONS = ['model.num_queries=30', 'model.decoder.num_layers=1',
                'model.test_cfg.max_per_img=30']

# One config per family; the families that have landed are tested (R18-vd
# and DySample are required, see test_required_families_exist).
FAMILIES = {
    'r18vd': 'rtdetr_r18vd_coco.py',
    'dysample': 'rtdetr_r18vd_dysample.py',
    'rmt_t': 'rtdetr_rmt_t.py',
    'mnv4_conv_s_bifpn': 'rtdetr_mnv4_conv_s_bifpn.py',
    'riformer_s12_deploy': 'deploy/rtdetr_riformer_s12_deploy.py',
    'bhvit': 'rtdetr_bhvit.py',
}
PRESENT = {
    name: osp.join(REPO_ROOT, 'configs', path)
    for name, path in FAMILIES.items()
    if osp.isfile(osp.join(REPO_ROOT, 'configs', path))
}


def resized_image(height, width):
    return mmcv.imresize(mmcv.imread(IMAGE), (width, height))


def test_required_families_exist():
    assert {'r18vd', 'dysample'} <= set(PRESENT)


@pytest.mark.parametrize('family', sorted(PRESENT))
def test_export_matches_pytorch(family, tmp_path):
    """The exported graph run by ONNX Runtime reproduces ``model.predict``
    of the (non-deployed) PyTorch model on a real image."""
    torch.manual_seed(0)
    model = load_detector(PRESENT[family], None, TINY)
    shape = (96, 96)
    out = str(tmp_path / 'model.onnx')
    info = export_onnx(model, out, shape)
    assert info['topk'] == 30
    image = resized_image(*shape)
    reference = torch_predict(model, image)
    labels, boxes, scores = run_ort(create_ort_session(out),
                                    bgr_to_onnx_input(image))
    assert labels.shape == (1, 30) and labels.dtype == np.int64
    assert boxes.shape == (1, 30, 4) and scores.shape == (1, 30)
    stats = compare_detections(reference, (labels[0], boxes[0], scores[0]),
                               shape)
    assert stats['ok'], stats
    assert stats['num_checked'] >= 25
    assert stats['max_box_diff'] < 1e-4 and stats['max_score_diff'] < 1e-4
    if family == 'riformer_s12_deploy':
        assert any(name.startswith('backbone') for name in info['deployed'])


def test_export_cli_padding_dynamic_batch_and_simplify(tmp_path, capsys):
    """The CLI on a non-square size that is not a multiple of 32 (padding
    inside the graph), with a dynamic batch, onnxsim and --check."""
    import export_onnx as cli
    out = str(tmp_path / 'r18.onnx')
    assert cli.main([
        PRESENT['r18vd'], '--out', out, '--shape', '120', '150',
        '--dynamic-batch', '--simplify', '--check', IMAGE, '--cfg-options',
        *TINY_OPTIONS
    ]) == 0
    assert 'OK' in capsys.readouterr().out
    image = bgr_to_onnx_input(resized_image(120, 150))
    session = create_ort_session(out)
    single = run_ort(session, image)
    labels, boxes, scores = run_ort(session, np.concatenate([image] * 3))
    assert boxes.shape == (3, 30, 4)
    np.testing.assert_array_equal(labels[2], single[0][0])
    np.testing.assert_allclose(boxes[2], single[1][0], atol=1e-4)
    assert (boxes[..., 0::2] <= 150).all() and (boxes[..., 1::2] <= 120).all()
    assert (boxes >= 0).all()
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize('argv, message', [
    (['configs/missing.py', '--out', 'x.onnx'], 'config file not found'),
    (['configs/rtdetr_r18vd_coco.py', 'missing.pth', '--out', 'x.onnx'],
     'checkpoint file not found'),
    (['configs/rtdetr_r18vd_coco.py', '--out', 'x.onnx', '--check',
      'missing.jpg'], '--check image not found'),
])
def test_export_cli_errors(argv, message, capsys, monkeypatch):
    import export_onnx as cli
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert message in capsys.readouterr().err


def test_export_rejects_old_opset(tmp_path):
    model = load_detector(PRESENT['r18vd'], None, TINY)
    with pytest.raises(ValueError, match='opset >= 16'):
        export_onnx(model, str(tmp_path / 'm.onnx'), (64, 64), opset=13)


def test_switch_to_deploy_fuses_repvgg_and_keeps_outputs():
    torch.manual_seed(0)
    model = load_detector(PRESENT['r18vd'], None, TINY)
    for module in model.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    image = resized_image(96, 96)
    before = torch_predict(model, image)
    blocks = [m for m in model.modules() if isinstance(m, RepVGGBlock)]
    assert blocks and not any(block.deploy for block in blocks)
    names = switch_to_deploy(model)
    assert len(names) == len(blocks)
    assert all(block.deploy for block in blocks)
    assert switch_to_deploy(model) == names  # idempotent
    stats = compare_detections(before, torch_predict(model, image), (96, 96))
    assert stats['ok'], stats


def test_compare_detections_detects_mismatch():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 100, (10, 4)).astype(np.float32)
    scores = np.sort(rng.uniform(0.1, 0.9, 10))[::-1].astype(np.float32)
    labels = rng.integers(0, 3, 10)
    perm = rng.permutation(10)
    same = compare_detections((labels, boxes, scores),
                              (labels[perm], boxes[perm], scores[perm]),
                              (100, 100))
    assert same['ok'] and same['max_box_diff'] == 0
    moved = boxes.copy()
    moved[0, 0] += 1.0  # 1 % of the image: far above 1e-3
    bad = compare_detections((labels, boxes, scores), (labels, moved, scores),
                             (100, 100))
    assert not bad['ok'] and bad['num_unmatched'] == 2
    relabelled = labels.copy()
    relabelled[0] = (labels[0] + 1) % 3
    assert not compare_detections((labels, boxes, scores),
                                  (relabelled, boxes, scores),
                                  (100, 100))['ok']


def test_benchmark_onnxruntime_backend():
    from benchmark import BACKENDS, build_model, make_inputs, run_benchmark
    from mmengine.logging import MMLogger
    model = build_model(PRESENT['r18vd'], 'detector', TINY)
    inputs, samples = make_inputs(model, 'detector', 1, 96, 128)
    runner = BACKENDS['onnxruntime'](model, inputs, samples)
    labels, boxes, scores = runner()
    assert boxes.shape == (1, 30, 4)
    stats = run_benchmark(runner, 0, 2, 1,
                          MMLogger.get_instance('test_deploy_benchmark'))
    assert stats['median_ms'] > 0 and stats['throughput'] > 0
    with pytest.raises(ValueError, match='--part detector'):
        BACKENDS['onnxruntime'](model.backbone, inputs, None)


def test_model_zoo_table(tmp_path):
    """Params/FLOPs (mmengine counter), eager and ORT latency in one row."""
    import model_zoo_table
    out = tmp_path / 'zoo.md'
    assert model_zoo_table.main([
        '--configs', PRESENT['r18vd'], '--out', str(out), '--shape', '96',
        '--flops-shape', '96', '--warmup', '0', '--iters', '1',
        '--cfg-options', *TINY_OPTIONS
    ]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith('| config | backbone | params (M) | GFLOPs')
    row = [cell.strip() for cell in lines[2].strip('|').split('|')]
    assert row[0] == '`rtdetr_r18vd_coco.py`' and row[1] == 'ResNetVd-18'
    params, gflops, eager, ort = map(float, row[2:6])
    assert 15 < params < 25  # R18-vd RT-DETR with a 1-layer decoder
    assert 0 < gflops < 5  # ~60 GFLOPs at 640, /44 at 96
    assert eager > 0 and ort > 0
    assert row[6].endswith('x') and row[7] == '–'


def test_model_zoo_table_errors(capsys):
    import model_zoo_table
    with pytest.raises(SystemExit):
        model_zoo_table.main(['--configs', 'configs/missing.py'])
    assert 'config file not found' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        model_zoo_table.main(['--configs', PRESENT['r18vd'], '--checkpoint',
                              'no-equals-sign'])
    assert 'CONFIG=CKPT' in capsys.readouterr().err


def test_load_detector_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = load_detector(PRESENT['r18vd'], None, TINY)
    path = str(tmp_path / 'r18.pth')
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), path)
    torch.manual_seed(1)
    loaded = load_detector(PRESENT['r18vd'], path, TINY)
    assert not loaded.training
    for (name, ref), (_, got) in zip(model.state_dict().items(),
                                     loaded.state_dict().items()):
        assert torch.equal(ref, got), name
    two_layers = dict(model=dict(TINY['model'], decoder=dict(num_layers=2)))
    with pytest.raises(RuntimeError, match='decoder.layers.1'):
        load_detector(PRESENT['r18vd'], path, two_layers)
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        load_detector(PRESENT['r18vd'], str(tmp_path / 'missing.pth'), TINY)
