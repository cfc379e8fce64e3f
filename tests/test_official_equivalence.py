"""Numerical equivalence with the official RT-DETR R18-vd implementation.

The fixture (../shared/fixtures/rtdetr_r18vd_official.pt, not in the repo)
holds the official weights, two input images and the official intermediate
and final outputs. The official checkpoint is converted with
rtdetr_zoo.deploy.convert_official_state_dict (the converter of
tools/model_converters/rtdetr_official_to_mmdet.py) and loaded into
configs/rtdetr_r18vd_coco.py.
"""
import subprocess
import sys

import pytest
import torch

from rtdetr_zoo.deploy import convert_official_state_dict
from rtdetr_zoo.engine import read_checkpoint

from .utils import (OFFICIAL_FIXTURE, REPO_ROOT,
                    align_queries, assert_aligned_outputs_match,
                    assert_detections_match_official,
                    build_detector_from_config, official_test_samples,
                    requires_official_fixture)

OFFICIAL_NUM_PARAMS = 20_184_464

pytestmark = requires_official_fixture


@pytest.fixture(scope='module')
def fixture():
    return read_checkpoint(OFFICIAL_FIXTURE)


@pytest.fixture(scope='module')
def model_and_report(fixture):
    state_dict, dropped = convert_official_state_dict(fixture['state_dict'])
    model = build_detector_from_config('rtdetr_r18vd_coco', small=False)
    result = model.load_state_dict(state_dict, strict=False)
    model.eval()
    return model, state_dict, dropped, result


def test_converter_accounts_for_every_tensor(fixture, model_and_report):
    model, state_dict, dropped, result = model_and_report
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    assert set(state_dict) == set(model.state_dict())
    official = fixture['state_dict']
    # Every official tensor is used (renamed) or listed as dropped.
    assert len(state_dict) + sum(1 for k in dropped if k in official) == \
        len(official)
    assert list(dropped) == ['decoder.denoising_class_embed.weight[-1]']


def test_converter_tool_on_an_official_checkpoint_layout(
        fixture, model_and_report, tmp_path):
    """The command line reads the official release layout (weights under
    ``ema.module``, raw ones under ``model``) and writes the same tensors as
    the converter function, loadable by the weights-only reader."""
    src, dst = tmp_path / 'official.pth', tmp_path / 'out' / 'ours.pth'
    official = fixture['state_dict']
    torch.save(dict(ema=dict(module=official, updates=7),
                    model={k: torch.zeros_like(v)
                           for k, v in official.items()},
                    last_epoch=71), src)
    done = subprocess.run(
        [sys.executable, 'tools/model_converters/rtdetr_official_to_mmdet.py',
         str(src), str(dst)], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert f'converted {len(official)} official tensors' in output
    assert 'dropped decoder.denoising_class_embed.weight[-1]' in output
    written = read_checkpoint(str(dst))
    assert written['meta'] == dict(converted_from=str(src))
    expected = model_and_report[1]
    assert written['state_dict'].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(written['state_dict'][key], value), key

    missing = subprocess.run(
        [sys.executable, 'tools/model_converters/rtdetr_official_to_mmdet.py',
         str(tmp_path / 'missing.pth'), str(dst)], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600)
    assert missing.returncode == 1
    assert 'checkpoint file not found' in missing.stderr


def test_parameter_count_matches_official(fixture, model_and_report):
    model = model_and_report[0]
    ours = sum(p.numel() for p in model.parameters())
    assert fixture['num_params'] == OFFICIAL_NUM_PARAMS
    # The only difference: the official denoising embedding's padding row.
    assert OFFICIAL_NUM_PARAMS - ours == 256
    assert abs(ours - OFFICIAL_NUM_PARAMS) / OFFICIAL_NUM_PARAMS < 1e-3


# Channels-last convolutions (the default, docs/performance.md) sum in another
# order: features move by ~1e-6, which can swap a query whose encoder score
# ties with the 300th at the top-k cut (the fixture's README: even fp32 vs
# fp64 of the reference reorders near-equal scores). Measured: 1 of 600.
MAX_SWAPPED_QUERIES = dict(contiguous=0, channels_last=3)


@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@torch.no_grad()
def test_outputs_match_official(fixture, model_and_report, layout):
    model = model_and_report[0]
    if layout == 'contiguous':
        model = build_detector_from_config(
            'rtdetr_r18vd_coco', small=False,
            **{'model.channels_last': False})
        model.load_state_dict(model_and_report[1])
        model.eval()
    assert model.channels_last == (layout == 'channels_last')
    images = fixture['images_u8'].float() / 255
    if model.channels_last:  # as RTDETR.extract_feat does
        images = images.contiguous(memory_format=torch.channels_last)
    backbone_feats = model.backbone(images)
    for ours, ref in zip(backbone_feats, fixture['backbone_feats']):
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    encoder_feats = model.neck(backbone_feats)
    for ours, ref in zip(encoder_feats, fixture['encoder_feats']):
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)

    samples = official_test_samples(fixture['orig_sizes'])
    head_inputs = model.forward_transformer(encoder_feats, samples)
    cls_scores, bbox_preds = model.bbox_head(**head_inputs)
    init_ref = head_inputs['references'][0]
    for b in range(images.size(0)):
        min_dist, index = align_queries(
            init_ref[b], fixture['init_ref_points_unact'][b].sigmoid())
        assert_aligned_outputs_match(
            cls_scores[-1][b], bbox_preds[-1][b], (min_dist < 1e-5, index),
            {k: fixture[k][b] for k in ('pred_logits', 'pred_boxes')},
            MAX_SWAPPED_QUERIES[layout])

    results = model.bbox_head.predict_by_feat(
        cls_scores, bbox_preds, [s.metainfo for s in samples], rescale=True)
    assert_detections_match_official(results, fixture, fixture['orig_sizes'])
