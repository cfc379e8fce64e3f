"""ONNX export (end-to-end, NMS-free) and ONNX Runtime parity, the
benchmark's onnxruntime backend, FLOP counting and the model-zoo table, in
the package and through their command lines."""
import copy
import json
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from mmengine.analysis import complexity_analysis
from mmengine.logging import MMLogger

from rtdetr_zoo.analysis import (BACKENDS, build_model, make_inputs,
                                 model_complexity, run_benchmark)
from rtdetr_zoo.apis import load_detector
from rtdetr_zoo.deploy import (bgr_to_onnx_input, compare_detections,
                               create_ort_session, export_onnx, run_ort,
                               switch_to_deploy, torch_predict)
from rtdetr_zoo.layers import RepVGGBlock
from tools.analysis.model_zoo_table import (MARKERS, model_zoo_table,
                                            raccoon_twin,
                                            read_convergence_run, render,
                                            write_between_markers)
from tools.analysis.model_zoo_table import parse_args as table_parse_args
from tools.deploy.export_onnx import parse_args as export_parse_args

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMAGE = osp.join(REPO_ROOT, 'data', 'raccoon', 'images', 'raccoon-1.jpg')

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


def run_tool(*args, timeout=600):
    """Run a tool script of the repo in a subprocess; returns the process."""
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_required_families_exist():
    assert {'r18vd', 'dysample'} <= set(PRESENT)


def export_and_check_parity(model, shape, out):
    """Export ``model`` (30 detections) at ``shape`` (H, W) to ``out`` and
    check that ONNX Runtime reproduces ``model.predict`` of the
    (non-deployed) PyTorch model on a real image: boxes and scores within
    1e-4. Returns the export info."""
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
    return info


@pytest.mark.parametrize('family', sorted(PRESENT))
def test_export_matches_pytorch(family, tmp_path):
    """The exported graph run by ONNX Runtime reproduces ``model.predict``
    of the (non-deployed) PyTorch model on a real image."""
    torch.manual_seed(0)
    model = load_detector(PRESENT[family], None, TINY)
    info = export_and_check_parity(model, (96, 96),
                                   str(tmp_path / 'model.onnx'))
    if family == 'riformer_s12_deploy':
        assert any(name.startswith('backbone') for name in info['deployed'])


# RT-DETRv2: the official R18 release configs and every zoo variant's v2
# twin, with bilinear ('default') and discrete sampling; a zoo twin is made
# discrete the way _base_/models/rtdetrv2_dsp.py does it.
RTDETRV2_EXPORTS = [
    ('rtdetrv2_r18vd_120e_coco.py', 'default'),
    ('rtdetrv2_r18vd_dsp_3x_coco.py', 'discrete'),
    ('rtdetrv2_r18vd_dysample.py', 'default'),
    ('rtdetrv2_rmt_t.py', 'default'),
    ('rtdetrv2_mnv4_conv_s_bifpn.py', 'default'),
    ('rtdetrv2_mnv4_conv_s_bifpn.py', 'discrete'),
    ('rtdetrv2_riformer_s12.py', 'default'),
    ('rtdetrv2_bhvit.py', 'default'),
    ('rtdetrv2_hgnetv2_l_coco.py', 'default'),
]


@pytest.mark.parametrize('name, method', RTDETRV2_EXPORTS)
def test_rtdetrv2_export_matches_pytorch(name, method, tmp_path):
    """RT-DETRv2 exports (its attention in plain PyTorch ops) and ONNX
    Runtime reproduces ``model.predict`` on a non-square image; with
    discrete sampling the graph has no GridSample node (the official dsp
    models' point: runtimes without grid_sample). RIFormer is exported
    re-parameterised."""
    torch.manual_seed(0)
    options = copy.deepcopy(TINY)
    options['model']['decoder']['layer_cfg'] = dict(
        cross_attn_cfg=dict(method=method))
    model = load_detector(osp.join(REPO_ROOT, 'configs', name), None,
                          options)
    out = str(tmp_path / 'model.onnx')
    info = export_and_check_parity(model, (96, 128), out)
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert ('GridSample' in ops) == (method == 'default')
    if 'riformer' in name:
        assert any(n.startswith('backbone') for n in info['deployed'])


# DEIM: the official R18 release config and every zoo variant's DEIM twin.
DEIM_EXPORTS = [
    'deim_rtdetrv2_r18vd_120e_coco.py', 'deim_rtdetrv2_r18vd_dysample.py',
    'deim_rtdetrv2_rmt_t.py', 'deim_rtdetrv2_mnv4_conv_s_bifpn.py',
    'deim_rtdetrv2_riformer_s12.py', 'deim_rtdetrv2_bhvit.py',
    'deim_rtdetrv2_hgnetv2_l_coco.py'
]


@pytest.mark.parametrize('name', DEIM_EXPORTS)
def test_deim_export_matches_pytorch(name, tmp_path):
    """DEIM's model (the 3-layer query position MLP, SiLU in the decoder)
    exports and ONNX Runtime reproduces ``model.predict`` on a non-square
    image. RIFormer is exported re-parameterised."""
    torch.manual_seed(0)
    model = load_detector(osp.join(REPO_ROOT, 'configs', name), None,
                          copy.deepcopy(TINY))
    assert len(model.decoder.query_pos_head.layers) == 3
    out = str(tmp_path / 'model.onnx')
    info = export_and_check_parity(model, (96, 128), out)
    if 'riformer' in name:
        assert any(n.startswith('backbone') for n in info['deployed'])


# D-FINE and DEIM-D-FINE: the S release configs and every zoo twin.
DFINE_EXPORTS = [
    f'{recipe}_{variant}.py' for recipe in ('dfine', 'deim_dfine')
    for variant in ('hgnetv2_s_coco', 'r18vd', 'r18vd_dysample', 'rmt_t',
                    'mnv4_conv_s_bifpn', 'riformer_s12', 'bhvit')
]


@pytest.mark.parametrize('name', DFINE_EXPORTS)
def test_dfine_export_matches_pytorch(name, tmp_path):
    """D-FINE's FDR decoder (the distributions integrated to boxes, the
    LQE-corrected scores of the last layer) exports and ONNX Runtime
    reproduces ``model.predict`` on a non-square image. RIFormer is
    exported re-parameterised."""
    torch.manual_seed(0)
    model = load_detector(osp.join(REPO_ROOT, 'configs', name), None,
                          copy.deepcopy(TINY))
    assert len(model.bbox_head.lqe_layers) == 1
    info = export_and_check_parity(model, (96, 128),
                                   str(tmp_path / 'model.onnx'))
    if 'riformer' in name:
        assert any(n.startswith('backbone') for n in info['deployed'])


def test_dfine_tensor_mode_counts_flops():
    """mmdet's ``mode='tensor'`` (what the FLOPs counter traces) runs the
    D-FINE head on every decoder output: the counted GFLOPs of D-FINE-S at
    320x320 are a quarter of those at 640x640 (up to the fixed decoder
    part)."""
    from rtdetr_zoo.analysis import config_complexity
    config = osp.join(REPO_ROOT, 'configs', 'dfine_hgnetv2_s_coco.py')
    small = config_complexity(config, shape=(320, 320), cfg_options=TINY)
    large = config_complexity(config, shape=(640, 640), cfg_options=TINY)
    assert small['params'] == large['params'] > 5e6
    assert 0.2 < small['flops'] / large['flops'] < 0.3


def test_export_cli_padding_dynamic_batch_and_simplify(tmp_path):
    """The CLI on a non-square size that is not a multiple of 32 (padding
    inside the graph), with a dynamic batch, onnxsim and --check."""
    out = str(tmp_path / 'r18.onnx')
    done = run_tool(
        'tools/deploy/export_onnx.py', PRESENT['r18vd'], '--out', out,
        '--shape', '120', '150', '--dynamic-batch', '--simplify', '--check',
        IMAGE, '--cfg-options', *TINY_OPTIONS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '-> OK (atol 0.001)' in done.stdout
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
def test_export_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        export_parse_args(argv)
    assert exited.value.code == 2
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
    assert model.backbone.stem[0].efficient_conv_bn_eval_forward is not None
    names = switch_to_deploy(model)
    # The blocks and the detector itself (plain conv + BN, contiguous).
    assert names[0] == '' and len(names) == len(blocks) + 1
    assert all(block.deploy for block in blocks)
    assert model.backbone.stem[0].efficient_conv_bn_eval_forward is None
    assert not model.channels_last
    assert all(p.is_contiguous() for p in model.parameters())
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


def _fake_run(work_dir, stamp='20261125_120000'):
    """A finished tools/train.py work dir: log lines and scalars."""
    run = work_dir / stamp
    (run / 'vis_data').mkdir(parents=True)
    (run / f'{stamp}.log').write_text(
        '2026/11/25 12:00:00 - mmengine - INFO - start\n'
        '2026/11/25 12:09:30 - mmengine - INFO - end\n')
    records = [dict(loss=9.0, epoch=1, iter=1),
               dict(loss=5.0, epoch=2, iter=2),
               dict(loss=3.0, epoch=2, iter=3),
               {'coco/bbox_mAP': 0.12, 'coco/bbox_mAP_50': 0.34, 'step': 2}]
    (run / 'vis_data' / 'scalars.json').write_text(
        '\n'.join(json.dumps(r) for r in records) + '\n')


def test_model_zoo_table_replaces_only_between_markers(tmp_path):
    doc = tmp_path / 'zoo.md'
    doc.write_text('# Zoo\nintro\n' + MARKERS[0] + '\nold table\n' +
                   MARKERS[1] + '\nwhy R18 wins\n')
    write_between_markers(str(doc), '| new | table |\n')
    assert doc.read_text() == ('# Zoo\nintro\n' + MARKERS[0] +
                               '\n| new | table |\n' + MARKERS[1] +
                               '\nwhy R18 wins\n')
    plain = tmp_path / 'plain.md'
    plain.write_text('anything')
    write_between_markers(str(plain), 'table\n')
    assert plain.read_text() == 'table\n'


def test_read_convergence_run(tmp_path):
    assert read_convergence_run(str(tmp_path / 'missing')) is None
    _fake_run(tmp_path / 'rtdetr_r18vd_raccoon')
    run = read_convergence_run(str(tmp_path / 'rtdetr_r18vd_raccoon'))
    assert run == dict(evals=[(2, 0.12, 0.34)], map=0.12, ap50=0.34,
                       epoch=2, first_loss=9.0, loss=4.0, minutes=9.5)
    assert raccoon_twin('configs/rtdetr_r18vd_coco.py') == \
        'rtdetr_r18vd_raccoon'
    assert raccoon_twin('configs/rtdetr_bhvit.py') == 'rtdetr_bhvit_raccoon'


def test_model_zoo_table(tmp_path):
    """Params/FLOPs (mmengine counter), eager and ORT latency timed
    alternately with ratios to the first config, and the convergence run's
    results, one row per config."""
    out = tmp_path / 'zoo.md'
    _fake_run(tmp_path / 'runs' / 'rtdetr_r18vd_raccoon')
    table = model_zoo_table(
        [PRESENT['r18vd'], PRESENT['r18vd']], str(out),
        MMLogger.get_instance('test_zoo'), shape=(96, 96),
        flops_shape=(96, 96), warmup=0, iters=2, cfg_options=TINY,
        runs_dir=str(tmp_path / 'runs'))
    assert out.read_text() == table
    lines = table.splitlines()
    assert lines[0].startswith('| config | backbone | params (M) | GFLOPs')
    row = [cell.strip() for cell in lines[2].strip('|').split('|')]
    assert row[0] == '`rtdetr_r18vd_coco.py`' and row[1] == 'ResNetVd-18'
    params, gflops, eager, ort = map(float, row[2:6])
    assert 15 < params < 25  # R18-vd RT-DETR with a 1-layer decoder
    assert 0 < gflops < 5  # ~60 GFLOPs at 640, /44 at 96
    assert eager > 0 and ort > 0
    assert row[6] == row[7] == '1.00x'  # the reference itself
    assert row[8:12] == ['12.0', '34.0', '9.0 → 4.0', '2 ep, 10 min']
    second = [cell.strip() for cell in lines[3].strip('|').split('|')]
    assert second[6].endswith('x') and second[7].endswith('x')
    assert 'Table generated in' in table and 'alternating' in table


def test_model_zoo_table_without_runs_has_no_run_columns():
    """A table made without ``--runs-dir`` (a speed-only table) has no
    raccoon columns and its footnote names no runs folder."""
    rows = [dict(config=f'configs/{name}.py', backbone='ResNetVd-18',
                 params=20e6, flops=28e9, eager=eager, ort=ort, run=None)
            for name, eager, ort in (('a', 500., 400.), ('b', 250., 100.))]
    table = render(rows, (640, 640), (640, 640), 2, 5, 2, None, 60.)
    header = table.splitlines()[0]
    assert 'raccoon' not in header and 'run' not in header.split('|')
    assert header.endswith('| ORT vs ref | blog figure |')
    second = [c.strip() for c in table.splitlines()[3].strip('|').split('|')]
    assert second == ['`b.py`', 'ResNetVd-18', '20.00', '28.0', '250', '100',
                      '0.50x', '0.25x', '–']
    assert 'None' not in table and 'Raccoon columns' not in table
    with_runs = render(rows, (640, 640), (640, 640), 2, 5, 2, 'runs', 60.)
    assert '| raccoon mAP | raccoon AP50 | train loss | run |' in with_runs
    assert 'raccoon twin in `runs`' in with_runs


@pytest.mark.parametrize('argv, message', [
    (['--configs', 'configs/missing.py'], 'config file not found'),
    (['--runs-dir', 'no/such/folder'], '--runs-dir folder not found'),
])
def test_model_zoo_table_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        table_parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_model_zoo_table_refuses_missing_out_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='--out folder does not'):
        model_zoo_table([PRESENT['r18vd']], str(tmp_path / 'no' / 'zoo.md'),
                        MMLogger.get_instance('test_zoo'))


class _Attention(torch.nn.Module):
    """Attention of all L queries on the first 6 positions (S = 6)."""

    def forward(self, q):
        kv = q[..., :6, :]
        return F.scaled_dot_product_attention(q, kv, kv)


def test_flops_count_sdpa_without_changing_mmengine_defaults():
    """(B, heads, L, E) = (2, 3, 11, 4) queries on S = 6 keys/values: the
    handle counts L * S * (E + Ev) per batch and head; mmengine's default
    handle tables are left as they are."""
    before = dict(complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS)
    info = model_complexity(_Attention(), (torch.rand(2, 3, 11, 4), ),
                            show_table=True)
    assert info['flops'] == 2 * 3 * 11 * 6 * (4 + 4)
    assert info['params'] == 0 and '| module' in info['out_table']
    assert complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS == before
    assert ('aten::scaled_dot_product_attention'
            not in complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS)


def test_get_flops_and_benchmark_cli():
    flops = run_tool('tools/analysis/get_flops.py', PRESENT['r18vd'],
                     '--shape', '64', '--cfg-options', *TINY_OPTIONS)
    assert flops.returncode == 0, flops.stderr[-3000:]
    assert 'input: 64x64 image -> tensor 1x3x64x64' in flops.stdout
    assert 'FLOPs: ' in flops.stdout and 'params: ' in flops.stdout
    bench = run_tool('tools/analysis/benchmark.py', PRESENT['r18vd'],
                     '--part', 'backbone', '--shape', '64', '--warmup', '0',
                     '--iters', '2', '--cfg-options', *TINY_OPTIONS)
    assert bench.returncode == 0, bench.stderr[-3000:]
    output = bench.stdout + bench.stderr
    assert '[backbone, pytorch, infer]' in output
    assert 'latency: median' in output


def test_load_detector_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = load_detector(PRESENT['r18vd'], None, TINY)
    path = str(tmp_path / 'r18.pth')
    torch.save(dict(meta=dict(dataset_meta=dict(CLASSES=('a', 'b'))),
                    state_dict={'module.' + k: v
                                for k, v in model.state_dict().items()}),
               path)
    torch.manual_seed(1)
    loaded = load_detector(PRESENT['r18vd'], path, TINY)
    assert not loaded.training
    assert loaded.dataset_meta['classes'] == ('a', 'b')
    for (name, ref), (_, got) in zip(model.state_dict().items(),
                                     loaded.state_dict().items()):
        assert torch.equal(ref, got), name
    two_layers = dict(model=dict(TINY['model'], decoder=dict(num_layers=2)))
    with pytest.raises(RuntimeError,
                       match=r'\d+ missing keys .*decoder\.layers\.1'):
        load_detector(PRESENT['r18vd'], path, two_layers)
    partial = load_detector(PRESENT['r18vd'], path, two_layers, strict=False)
    assert torch.equal(partial.state_dict()['decoder.layers.0.norms.0.weight'],
                       model.state_dict()['decoder.layers.0.norms.0.weight'])
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        load_detector(PRESENT['r18vd'], str(tmp_path / 'missing.pth'), TINY)
    with pytest.raises(FileNotFoundError, match='config file not found'):
        load_detector(str(tmp_path / 'missing.py'))


def test_load_detector_drops_backbone_init_cfg_and_keeps_config():
    """A Pretrained init_cfg pointing at a URL is dropped (nothing is
    downloaded, init_weights is never asked to); the caller's Config is not
    modified."""
    from rtdetr_zoo.apis import load_config
    cfg = load_config(PRESENT['r18vd'], TINY)
    cfg.model.backbone.init_cfg = dict(
        type='Pretrained', checkpoint='http://127.0.0.1:9/r18.pth')
    model = load_detector(cfg)
    assert model.cfg.model.backbone.init_cfg is None
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    model.init_weights()
