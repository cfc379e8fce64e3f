"""COCO evaluation of an exported graph (``evaluate_onnx``,
``tools/deploy/test_onnx.py``), static INT8 export (``quantize_onnx``,
``export_onnx.py --int8``) and the benchmark of existing graph files, on a
tiny random-weight raccoon model at the config's 320x320."""
import os.path as osp
import subprocess
import sys

import mmcv
import mmengine
import numpy as np
import onnx
import pytest
import torch
from mmengine.logging import MMLogger

from rtdetr_zoo.analysis.benchmark import benchmark_onnx
from rtdetr_zoo.apis import load_detector
from rtdetr_zoo.deploy import (bgr_to_onnx_input, build_evaluator,
                               build_test_dataset, compare_detections,
                               create_ort_session, evaluate_onnx,
                               export_onnx, iter_onnx_predictions,
                               quantize_onnx, run_ort, train_image_paths)

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO_ROOT, 'configs', 'rtdetr_r18vd_raccoon.py')
IMAGE = osp.join(REPO_ROOT, 'data', 'raccoon', 'images', 'raccoon-1.jpg')
TINY = ['model.num_queries=30', 'model.decoder.num_layers=1',
        'model.test_cfg.max_per_img=30',
        'model.dn_cfg.group_cfg.num_dn_queries=10']
TINY_DICT = {key: int(value)
             for key, value in (option.split('=') for option in TINY)}
SIZE = (320, 320)  # the raccoon test pipeline's resize


def run_tool(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
    """A seeded tiny model, its checkpoint, and the fp32 + INT8 graphs
    written by ``export_onnx.py --int8`` (4 calibration images)."""
    tmp = tmp_path_factory.mktemp('onnx_eval')
    torch.manual_seed(0)
    model = load_detector(CONFIG, cfg_options=TINY_DICT)
    model.init_weights()
    model.eval()
    checkpoint = str(tmp / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=model.dataset_meta)), checkpoint)
    fp32 = str(tmp / 'tiny.onnx')
    proc = run_tool('tools/deploy/export_onnx.py', CONFIG, checkpoint,
                    '--out', fp32, '--int8', '--calib-images', '4',
                    '--cfg-options', *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'INT8 graph' in proc.stdout
    return dict(model=model, fp32=fp32, int8=str(tmp / 'tiny_int8.onnx'),
                tmp=tmp)


def test_onnx_predictions_match_pytorch(graphs, monkeypatch):
    """Per image, the graph's detections in original-image pixels equal
    ``model.predict(..., rescale=True)`` on the same packed test input."""
    monkeypatch.chdir(REPO_ROOT)
    model = graphs['model']
    cfg = model.cfg
    dataset = build_test_dataset(cfg, max_images=3)
    assert len(dataset) == 3
    session = create_ort_session(graphs['fp32'])
    checked = 0
    for data, result in iter_onnx_predictions(session, dataset):
        with torch.no_grad():
            batch = model.data_preprocessor(
                dict(inputs=[data['inputs']],
                     data_samples=[data['data_samples']]), training=False)
            ref = model.predict(batch['inputs'], batch['data_samples'],
                                rescale=True)[0].pred_instances
        pred = result.pred_instances
        assert pred.bboxes.shape == (30, 4)
        stats = compare_detections(
            (ref.labels.numpy(), ref.bboxes.numpy(), ref.scores.numpy()),
            (pred.labels.numpy(), pred.bboxes.numpy(), pred.scores.numpy()),
            result.ori_shape, atol=1e-3)
        assert stats['ok'], stats
        checked += 1
    assert checked == 3
    # The COCO metric of a subset is restricted to the subset's images.
    evaluator = build_evaluator(cfg, dataset)
    ids = [dataset.get_data_info(i)['img_id'] for i in range(3)]
    assert evaluator.metrics[0].img_ids == ids


def test_test_onnx_tool_prints_coco_map(graphs):
    proc = run_tool('tools/deploy/test_onnx.py', CONFIG, graphs['fp32'],
                    '--max-images', '3')
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines()
            if ln.startswith('coco/bbox_mAP:')]
    assert len(line) == 1
    assert 0.0 <= float(line[0].split(':')[1]) <= 1.0


def box_iou(a, b):
    """IoU matrix (N, M) of xyxy boxes a (N, 4) and b (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter)


def test_int8_graph_runs_and_overlaps_fp32(graphs):
    graph = onnx.load(graphs['int8'])
    ops = {node.op_type for node in graph.graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    # Decoder and heads stay fp32: no quantized input feeds them.
    assert 'GridSample' in ops
    assert_int8_agrees_with_fp32(graphs['fp32'], graphs['int8'])


def assert_int8_agrees_with_fp32(fp32_path, int8_path):
    """On a raccoon image, the INT8 graph's outputs have the fp32 graph's
    shapes and dtypes, are finite, and agree with it."""
    image = mmcv.imresize(mmcv.imread(IMAGE), SIZE[::-1])
    fp32 = run_ort(create_ort_session(fp32_path), bgr_to_onnx_input(image))
    int8 = run_ort(create_ort_session(int8_path), bgr_to_onnx_input(image))
    for ref, out in zip(fp32, int8):
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert np.isfinite(out).all()
    # Random weights give near-equal scores (sorted score lists are close),
    # so quantization noise reorders the detections; the sets overlap: most
    # INT8 boxes coincide (IoU > 0.5) with an fp32 box (0.7 measured).
    assert np.abs(fp32[2][0] - int8[2][0]).max() < 0.05
    overlap = (box_iou(int8[1][0], fp32[1][0]).max(1) > 0.5).mean()
    assert overlap >= 0.5, overlap


def test_benchmark_existing_graphs_alternates(graphs):
    logger = MMLogger.get_instance('test_onnx_eval_benchmark')
    results = benchmark_onnx([graphs['fp32'], graphs['int8']], logger,
                             warmup=0, iters=2, num_threads=1)
    assert list(results) == [graphs['fp32'], graphs['int8']]
    assert results[graphs['fp32']]['input_shape'] == (1, 3, *SIZE)
    assert results[graphs['int8']]['speedup'] > 0


def constant_graph(path, height, width):
    """A trivial graph with an ``images`` (1, 3, H, W) input."""
    helper = onnx.helper
    node = helper.make_node('Identity', ['images'], ['out'])
    graph = helper.make_graph(
        [node], 'g',
        [helper.make_tensor_value_info('images', onnx.TensorProto.FLOAT,
                                       [1, 3, height, width])],
        [helper.make_tensor_value_info('out', onnx.TensorProto.FLOAT,
                                       [1, 3, height, width])])
    onnx.save(helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)]), path)


def test_bad_inputs_give_clear_errors(graphs, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    other = str(tmp_path / 'other_size.onnx')
    constant_graph(other, 96, 128)
    with pytest.raises(ValueError, match=r'96x128 .*320x320'):
        evaluate_onnx(CONFIG, other, max_images=1)
    missing = str(tmp_path / 'missing.onnx')
    with pytest.raises(FileNotFoundError, match='missing.onnx'):
        evaluate_onnx(CONFIG, missing)
    with pytest.raises(FileNotFoundError, match='missing.onnx'):
        quantize_onnx(missing, str(tmp_path / 'q.onnx'), [IMAGE])
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('no images here')
    with pytest.raises(FileNotFoundError, match='no images .*empty'):
        quantize_onnx(graphs['fp32'], str(tmp_path / 'q.onnx'), str(empty))
    with pytest.raises(ValueError, match='no calibration images'):
        quantize_onnx(graphs['fp32'], str(tmp_path / 'q.onnx'), [])
    proc = run_tool('tools/deploy/test_onnx.py', CONFIG, missing)
    assert proc.returncode != 0 and 'missing.onnx' in proc.stderr


def test_calibration_images_come_from_the_training_set(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    paths = train_image_paths(CONFIG, 5)
    assert len(paths) == 5 and all(osp.isfile(p) for p in paths)
    train = {img['file_name'] for img in mmengine.load(
        osp.join(REPO_ROOT, 'data', 'raccoon', 'coco', 'train.json'))
        ['images']}
    assert {osp.basename(p) for p in paths} <= train


@pytest.mark.parametrize('name', ['rtdetrv2_r18vd_dsp_raccoon',
                                  'deim_rtdetrv2_r18vd_raccoon'])
def test_int8_of_the_rtdetrv2_and_deim_graphs(name, tmp_path):
    """RT-DETRv2 with discrete sampling and DEIM quantize like RT-DETR: the
    decoder's value projection (the memory the sampling reads) is
    quantized and the detections stay close to the fp32 graph's; the
    discrete INT8 graph still has no GridSample."""
    torch.manual_seed(0)
    config = osp.join(REPO_ROOT, 'configs', f'{name}.py')
    model = load_detector(config, cfg_options=TINY_DICT)
    model.init_weights()
    model.eval()
    fp32 = str(tmp_path / 'model.onnx')
    export_onnx(model, fp32, SIZE)
    info = quantize_onnx(fp32, str(tmp_path / 'model_int8.onnx'),
                         train_image_paths(config, 4, TINY_DICT))
    assert info['num_calib_images'] == 4
    nodes = onnx.load(info['path']).graph.node
    if '_dsp' in name:
        assert 'GridSample' not in {node.op_type for node in nodes}
    quantized = {output for node in nodes
                 if node.op_type == 'DequantizeLinear'
                 for output in node.output}
    # (MatMul + Add, fused into a Gemm by the quantizer's pre-processing)
    value_proj = [node for node in nodes if node.op_type in ('MatMul', 'Gemm')
                  and '/cross_attn/value_proj/' in node.name]
    assert value_proj and all(set(node.input[:2]) <= quantized
                              for node in value_proj)
    assert_int8_agrees_with_fp32(fp32, info['path'])
