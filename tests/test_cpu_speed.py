"""The CPU speed work: channels-last convolutions with dense gradients,
on-the-fly conv-BN folding in eval, the faster CPU deformable attention,
bfloat16 inference and training, and the benchmark's training mode and
revision comparison (tools/analysis/, outside the package). The speed itself
is measured by tools/analysis/benchmark.py (docs/performance.md), not
here."""
import ast
import glob
import os.path as osp
import subprocess

import pytest
import torch
from mmcv.cnn import ConvModule
from mmcv.ops import MultiScaleDeformableAttention
from mmengine.optim import build_optim_wrapper

from rtdetr_zoo.apis import bf16_autocast, enable_bf16_testing
from rtdetr_zoo.engine import CPUCapableAmpOptimWrapper
from rtdetr_zoo.layers import CPUFastMultiScaleDeformableAttention
from tools.analysis.revision_compare import compare_revisions, git_worktree
from tools.analysis.timed_step import TimedStep, profile_step

from .utils import (OFFICIAL_FIXTURE, REPO_ROOT, assert_same_attention,
                    build_detector_from_config, config_path, load_config,
                    make_batch, requires_official_fixture)

R18 = 'rtdetr_r18vd_raccoon'  # under configs/
TINY = {'model.num_queries': 20, 'model.decoder.num_layers': 1,
        'model.dn_cfg.group_cfg.num_dn_queries': 6,
        'model.test_cfg.max_per_img': 20}


def _deformable_inputs(batch=2, num_query=7):
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[10, 12], [5, 6], [3, 3]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    query = torch.randn(batch, num_query, 32, generator=gen)
    value = torch.randn(batch, int(shapes.prod(1).sum()), 32, generator=gen)
    boxes = torch.rand(batch, num_query, 1, 4, generator=gen) * 0.6 + 0.2
    return dict(query=query, value=value,
                reference_points=boxes.expand(-1, -1, 3, -1),
                spatial_shapes=shapes, level_start_index=starts)


def test_deformable_attention_cpu_path_equals_mmcv():
    torch.manual_seed(0)
    ours = CPUFastMultiScaleDeformableAttention(
        32, num_heads=4, num_levels=3, num_points=2, dropout=0.0,
        batch_first=True)
    for param in ours.parameters():
        param.data.normal_(0, 0.1)
    reference = MultiScaleDeformableAttention(
        32, num_heads=4, num_levels=3, num_points=2, dropout=0.0,
        batch_first=True)
    reference.load_state_dict(ours.state_dict())
    assert_same_attention(ours, reference, _deformable_inputs)
    # A key padding mask is left to mmcv's path (and still works).
    inputs = _deformable_inputs()
    mask = torch.zeros(inputs['value'].shape[:2], dtype=torch.bool)
    torch.testing.assert_close(
        ours(key_padding_mask=mask, **inputs),
        reference(key_padding_mask=mask, **inputs))


def test_channels_last_model_layout_and_dense_batchnorm_gradients():
    model = build_detector_from_config(R18, **TINY)
    assert model.channels_last and model.efficient_conv_bn_eval
    convs = [m for part in (model.backbone, model.neck, model.input_proj)
             for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(
        c.weight.is_contiguous(memory_format=torch.channels_last)
        for c in convs)
    conv_bns = [m for m in model.modules()
                if isinstance(m, ConvModule) and m.with_norm]
    assert conv_bns and all(
        m.efficient_conv_bn_eval_forward is not None for m in conv_bns)
    # Every BatchNorm receives a densely packed channels-last gradient,
    # also those whose output is concatenated or flattened (the detector's
    # hooks); without them some would not.
    layouts = _batchnorm_gradient_layouts(model)
    assert len(layouts) == sum(isinstance(m, torch.nn.BatchNorm2d)
                               for m in model.modules())
    assert all(layouts.values()), [k for k, v in layouts.items() if not v]
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module._forward_hooks.clear()
    assert not all(_batchnorm_gradient_layouts(model).values())


def _batchnorm_gradient_layouts(model):
    """BatchNorm name -> whether the gradient its backward receives is
    densely channels-last, after one loss backward."""
    layouts = {}

    def record(name):
        def tensor_hook(grad):
            layouts[name] = grad.is_contiguous(
                memory_format=torch.channels_last)

        def forward_hook(module, inputs, output):
            # Runs after the detector's own hook: sees what BN receives.
            output.register_hook(tensor_hook)
        return forward_hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d)
    ]
    inputs, samples = make_batch(model, sizes=((128, 128), (128, 128)))
    losses = model.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for handle in handles:
        handle.remove()
    return layouts


def test_channels_last_and_conv_bn_folding_keep_the_detections():
    torch.manual_seed(0)
    fast = build_detector_from_config(R18, **TINY).eval()
    plain = build_detector_from_config(
        R18, **TINY, **{'model.channels_last': False,
                        'model.efficient_conv_bn_eval': False}).eval()
    plain.load_state_dict(fast.state_dict())
    for module in plain.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
    fast.load_state_dict(plain.state_dict())
    inputs, samples = make_batch(plain, sizes=((160, 128), (128, 160)))
    with torch.no_grad():
        feats = [plain.extract_feat(inputs), fast.extract_feat(inputs)]
        results = [plain.predict(inputs, samples),
                   fast.predict(inputs, samples)]
    assert not feats[0][0].is_contiguous(memory_format=torch.channels_last)
    assert feats[1][0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(*feats):  # float32 rounding of another summation order
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    for a, b in zip(*results):
        torch.testing.assert_close(a.pred_instances.scores,
                                   b.pred_instances.scores, atol=1e-4,
                                   rtol=1e-4)
        torch.testing.assert_close(a.pred_instances.bboxes,
                                   b.pred_instances.bboxes, atol=1e-2,
                                   rtol=1e-4)


def test_bf16_autocast_keeps_heads_and_boxes_in_float32():
    model = build_detector_from_config(R18, **TINY).eval()
    inputs, samples = make_batch(model)
    with torch.no_grad(), bf16_autocast('cpu'):
        feats = model.extract_feat(inputs)
        head_inputs = model.forward_transformer(feats, samples)
        scores, boxes = model.bbox_head(**head_inputs)
        results = model.predict(inputs, samples)
    assert feats[0].dtype == torch.bfloat16
    assert scores.dtype == boxes.dtype == torch.float32
    assert head_inputs['references'][-1].dtype == torch.float32
    assert results[0].pred_instances.bboxes.dtype == torch.float32
    assert torch.isfinite(results[0].pred_instances.scores).all()
    with bf16_autocast('cpu', enabled=False):
        assert not torch.is_autocast_enabled('cpu')


def test_enable_bf16_testing_sets_the_test_loop():
    cfg = load_config(R18)
    enable_bf16_testing(cfg)
    assert cfg.test_cfg.fp16 is True
    assert cfg.test_cfg.type == 'TestLoop'


def test_amp_optim_wrapper_trains_in_bf16_on_a_cpu():
    model = torch.nn.Linear(4, 3)
    wrapper = build_optim_wrapper(model, dict(
        type='NonFiniteGuardAmpOptimWrapper',
        optimizer=dict(type='AdamW', lr=0.1, fused=True)))
    assert isinstance(wrapper, CPUCapableAmpOptimWrapper)
    assert wrapper.cast_dtype == torch.bfloat16
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(5, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().square().mean())
    assert not torch.equal(before, model.weight)
    assert wrapper.num_skipped == 0
    with pytest.raises(ValueError, match='bfloat16'):
        build_optim_wrapper(model, dict(
            type='CPUCapableAmpOptimWrapper', dtype='float16',
            optimizer=dict(type='SGD', lr=0.1)))


def test_timed_step_training_mode_updates_the_model():
    step = TimedStep(config_path('rtdetr_r18vd_raccoon'), mode='train',
                     batch=2, shape=(96, 96), cfg_options=TINY)
    assert step.model.training and step.samples[0].gt_instances.bboxes.numel()
    before = step.model.decoder.layers[0].ffn.layers[1].weight.detach().clone()
    loss = step()
    assert torch.isfinite(loss)
    assert not torch.equal(before,
                           step.model.decoder.layers[0].ffn.layers[1].weight)
    bf16 = TimedStep(config_path('rtdetr_r18vd_raccoon'), mode='infer',
                     shape=(96, 96), bf16=True, channels_last=True,
                     cfg_options=TINY)
    assert bf16.inputs.is_contiguous(memory_format=torch.channels_last)
    assert bf16()[0].pred_instances.scores.numel() == 20
    with pytest.raises(ValueError, match="mode 'train'"):
        TimedStep(config_path('rtdetr_r18vd_raccoon'), mode='train',
                  part='backbone')


def test_profile_step_reports_ops_and_python_calls(caplog):
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('test_profile_step')
    text = profile_step(config_path('rtdetr_r18vd_raccoon'), logger,
                        row_limit=5, shape=(96, 96), cfg_options=TINY)
    assert 'Self CPU' in text and 'Python function calls' in text


def test_compare_revisions_times_head_against_the_working_tree():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('test_compare_revisions')
    before = subprocess.run(['git', 'worktree', 'list'], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout
    results = compare_revisions(
        'configs/rtdetr_r18vd_raccoon.py', 'HEAD', logger, warmup=0, iters=2,
        threads=1, shape=(96, 96), cfg_options=TINY)
    assert set(results) == {'working tree', 'HEAD', 'speedup'}
    for name in ('working tree', 'HEAD'):
        assert results[name]['median_ms'] > 0
        assert results[name]['params'] > 0
        assert results[name]['peak_rss_growth_mib'] >= 0
    # Each worker imported the package of its own tree: the checkout's, and
    # HEAD's from the temporary worktree (a worker that fell back to another
    # copy of the package would time the same code twice).
    assert results['working tree']['package'] == osp.realpath(
        osp.join(REPO_ROOT, 'projects', 'rtdetr_zoo'))
    assert results['HEAD']['package'].endswith(
        osp.join('rev', 'projects', 'rtdetr_zoo'))
    assert not results['HEAD']['package'].startswith(
        osp.realpath(REPO_ROOT))
    after = subprocess.run(['git', 'worktree', 'list'], cwd=REPO_ROOT,
                           capture_output=True, text=True).stdout
    assert after == before  # the temporary worktree is removed
    with pytest.raises(ValueError, match='not a revision'):
        git_worktree(REPO_ROOT, 'no-such-revision', '/nonexistent')
    with pytest.raises(FileNotFoundError, match='config file not found'):
        compare_revisions('configs/missing.py', 'HEAD', logger)


def test_the_package_imports_no_tooling():
    """Revision comparison (git, subprocess workers) and memory sampling
    (psutil) live in tools/analysis/: no module of the installed package
    imports subprocess, psutil or a git library."""
    tooling = {'subprocess', 'psutil', 'git'}
    found = []
    for path in glob.glob(osp.join(REPO_ROOT, 'projects', 'rtdetr_zoo', '**',
                                   '*.py'), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            found += [f'{osp.relpath(path, REPO_ROOT)}: {name}'
                      for name in names if name.split('.')[0] in tooling]
    assert not found


@requires_official_fixture
def test_bf16_on_the_official_fixture_stays_close_to_float32():
    """bf16 autocast against float32 on the official R18-vd weights and
    images (../shared/fixtures; random weights, so many encoder scores
    nearly tie). Measured: encoder features within 0.8 % of their range,
    81-82 % of the 300 queries selected identically, their final class
    logits within 0.018; the held tolerances are about 2x looser."""
    from .utils import align_queries
    from mmdet.structures import DetDataSample
    from rtdetr_zoo.deploy import convert_official_state_dict
    from rtdetr_zoo.engine import read_checkpoint
    fixture = read_checkpoint(OFFICIAL_FIXTURE)
    state_dict, _ = convert_official_state_dict(fixture['state_dict'])
    model = build_detector_from_config('rtdetr_r18vd_coco', small=False)
    model.load_state_dict(state_dict)
    model.eval()
    images = fixture['images_u8'].float() / 255
    samples = [DetDataSample(metainfo=dict(
        img_shape=(640, 640), batch_input_shape=(640, 640)))
        for _ in range(2)]
    outputs = {}
    with torch.no_grad():
        for bf16 in (False, True):
            with bf16_autocast('cpu', bf16):
                feats = model.extract_feat(images)
                head_inputs = model.forward_transformer(feats, samples)
                scores, _ = model.bbox_head(**head_inputs)
            outputs[bf16] = (feats, head_inputs['references'][0], scores[-1])
    for fp32, bf16 in zip(outputs[False][0], outputs[True][0]):
        assert bf16.dtype == torch.bfloat16
        assert (fp32 - bf16.float()).abs().max() < 0.02 * fp32.abs().max()
    for b in range(2):
        distance, index = align_queries(outputs[True][1][b],
                                        outputs[False][1][b])
        same = distance < 1e-2
        assert same.float().mean() > 0.7
        logits = outputs[True][2][b][index][same]
        assert (logits - outputs[False][2][b][same]).abs().max() < 0.05
