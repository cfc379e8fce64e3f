"""D-FINE's hybrid encoder (``RepNCSPELAN4`` fusion blocks, ``SCDown``
down-sampling, lateral convs without activation) as options of our
:class:`~rtdetr_zoo.necks.HybridEncoder`, against the official D-FINE-S
(../shared/fixtures/deim_dfine_hgnetv2_s_official.pt: HGNetv2-B0 and the
encoder of ``deim_hgnetv2_s_coco.yml``, random weights, the encoder
features of two images computed by the official code)."""
import pytest
import torch

from mmdet.registry import MODELS
from rtdetr_zoo.backbones import HGNetv2
from rtdetr_zoo.engine import read_checkpoint
from rtdetr_zoo.engine.official_converter import rename_official_key

from .utils import OFFICIAL_DFINE_FIXTURE, requires_official_dfine_fixture

# D-FINE-S's encoder (dfine_hgnetv2_s_coco.yml on the code defaults).
DFINE_S_ENCODER = dict(
    type='HybridEncoder', in_channels=[256, 512, 1024], hidden_dim=256,
    expansion=0.5, depth_mult=0.34, fusion_block_cfg=dict(type='RepNCSPELAN4'),
    downsample_cfg=dict(type='SCDown'), lateral_act=False)


def test_dfine_blocks_shapes_and_options():
    """The D-FINE options build the official blocks: a RepNCSPELAN4 with a
    64-channel branch (``round(0.5 * 256 // 2)``) and one RepVGG block per
    CSP branch (``round(3 * 0.34)``), an SCDown of a 1x1 and a depthwise
    stride-2 conv without activation, lateral convs without activation;
    the encoder keeps every level's size for odd inputs."""
    neck = MODELS.build(DFINE_S_ENCODER)
    block = neck.fpn_blocks[0]
    assert type(block).__name__ == 'RepNCSPELAN4'
    assert block.cv2[0].conv2.conv.out_channels == 64
    assert len(block.cv2[0].bottlenecks) == 1
    down = neck.downsample_convs[0]
    assert type(down).__name__ == 'SCDown'
    assert down.cv2.conv.groups == 256 and down.cv2.conv.stride == (2, 2)
    assert not down.cv1.with_activation and not down.cv2.with_activation
    assert not neck.lateral_convs[0].with_activation
    rtdetr = MODELS.build(dict(type='HybridEncoder'))
    assert rtdetr.lateral_convs[0].with_activation
    feats = [torch.randn(1, c, s, s) for c, s in
             zip((256, 512, 1024), (21, 11, 6))]
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [
        (1, 256, 21, 21), (1, 256, 11, 11), (1, 256, 6, 6)]
    with pytest.raises(ValueError, match='in_channels must be even'):
        MODELS.build(dict(type='RepNCSPELAN4', in_channels=7,
                          out_channels=4))


@requires_official_dfine_fixture
def test_dfine_s_backbone_and_encoder_equal_the_official():
    """The fixture's official backbone and encoder keys load into
    HGNetv2-B0 and the D-FINE encoder options without a missing or
    unexpected key, and the three encoder outputs of both images equal
    the official ones to 1e-4 plus 1e-5 relative (the features reach |21|;
    float32 rounding, which moves with the thread count, reaches 1.2e-4
    on a feature of 6.7 with one thread)."""
    fixture = read_checkpoint(OFFICIAL_DFINE_FIXTURE)
    state = {key: value.float() if value.is_floating_point() else value
             for key, value in fixture['state_dict'].items()}
    backbone = HGNetv2('B0', use_lab=True).eval()
    backbone.load_state_dict(backbone.convert_pretrained(
        {k[len('backbone.'):]: v for k, v in state.items()
         if k.startswith('backbone.')}), strict=True)
    neck = MODELS.build(DFINE_S_ENCODER).eval()
    neck.load_state_dict(
        {rename_official_key(k)[len('neck.'):]: v
         for k, v in state.items() if k.startswith('encoder.')},
        strict=True)
    with torch.no_grad():
        feats = neck(backbone(fixture['images_u8'].float() / 255))
    for ours, official in zip(feats, fixture['default']['encoder_feats']):
        torch.testing.assert_close(ours, official.float(), atol=1e-4,
                                   rtol=1e-5)
