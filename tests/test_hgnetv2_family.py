"""HGNetv2 B0-B5, D-FINE's backbones (Peng et al., ICLR 2025), against the
official ``HGNetv2`` (ShihuaHuang95/DEIM snapshot a9aa4ad,
``engine/backbone/hgnetv2.py``, the same file as Peterande/D-FINE's).

The B0 weights are the backbone of ../shared/fixtures/
deim_dfine_hgnetv2_s_official.pt (D-FINE-S, random weights, learnable
affines perturbed away from the identity), in the official key layout. The
reference statistics and samples of each output stage below were written
from a run of the official module on the fixture's two images
(``images_u8 / 255``, 640x640) in a scratch folder; the same run found our
outputs equal to the official ones to 0.0.
"""
import pytest
import torch

from rtdetr_zoo.backbones import HGNetv2
from rtdetr_zoo.engine import read_checkpoint

from .utils import OFFICIAL_DFINE_FIXTURE, requires_official_dfine_fixture

# Parameters of the official module built with the same arguments (its
# ``arch_configs``; use_lab as in D-FINE's N/S (B0) and M (B2) models).
OFFICIAL_NUM_PARAMS = {
    ('B0', True): 1_850_396, ('B1', False): 2_196_944,
    ('B2', True): 6_026_626, ('B3', False): 10_048_816,
    ('B4', False): 13_553_376, ('B5', False): 33_325_760,
}

# Official B0 outputs (stages 1, 2, 3): shape, mean, std, and the values of
# both images at four flat indices drawn by torch.manual_seed(0);
# torch.randint(0, C * H * W, (4,)).
OFFICIAL_B0_OUTPUTS = [
    ((2, 256, 80, 80), 0.501812, 0.793305,
     [[0.5577582, 0.0350037, 0.0350037, 1.0095869],
      [0.1435086, 0.2866178, 0.0350037, 0.0830095]]),
    ((2, 512, 40, 40), 0.903397, 0.967147,
     [[0.9158692, 0.1997960, 4.0713696, 0.4581698],
      [0.8561906, 0.7108815, 0.0989075, 3.1643867]]),
    ((2, 1024, 20, 20), 0.634950, 0.859723,
     [[0.0963135, 0.0963135, 0.0963135, 0.0963135],
      [2.6764400, 0.0963135, 0.0963135, 0.0963135]]),
]


@pytest.mark.parametrize('arch,use_lab', sorted(OFFICIAL_NUM_PARAMS))
def test_every_arch_has_the_official_size_and_layout(arch, use_lab):
    """Each arch has the official parameter count, four stages at strides
    4-32 with the official widths, and a learnable affine exactly where
    the official module has one (after each activation)."""
    model = HGNetv2(arch, use_lab=use_lab, out_indices=(0, 1, 2, 3))
    assert sum(p.numel() for p in model.parameters()) == \
        OFFICIAL_NUM_PARAMS[arch, use_lab]
    assert list(model.out_strides) == [4, 8, 16, 32]
    widths = [stage[2] for stage in HGNetv2.arch_zoo[arch]['stages']]
    assert list(model.out_channels) == widths
    affines = [name for name, _ in model.named_parameters()
               if name.endswith('lab.scale')]
    assert bool(affines) == use_lab
    # the depthwise down-sampling convs and the light blocks' 1x1 convs
    # have no activation, hence no affine
    for stage in (1, 2, 3):
        assert f'stages.{stage}.0.lab.scale' not in affines
    assert not any('conv1.lab' in n for n in affines)


def test_l_and_x_are_b4_and_b5():
    """RT-DETR's L and X are D-FINE's B4 and B5 (the same tables)."""
    assert HGNetv2.arch_zoo['L'] == HGNetv2.arch_zoo['B4']
    assert HGNetv2.arch_zoo['X'] == HGNetv2.arch_zoo['B5']


@requires_official_dfine_fixture
def test_b0_equals_the_official_module_on_its_weights():
    """The fixture's official backbone keys (``aggregation.0/1``,
    ``downsample``, ``lab``) load into HGNetv2-B0 with ``use_lab`` without
    a missing or unexpected key, and the outputs are the official ones."""
    fixture = read_checkpoint(OFFICIAL_DFINE_FIXTURE)
    state = {key[len('backbone.'):]: value.float()
             for key, value in fixture['state_dict'].items()
             if key.startswith('backbone.')}
    assert any('.aggregation.0.' in key for key in state)
    model = HGNetv2('B0', use_lab=True).eval()
    model.load_state_dict(model.convert_pretrained(state), strict=True)
    with torch.no_grad():
        outputs = model(fixture['images_u8'].float() / 255)
    assert len(outputs) == len(OFFICIAL_B0_OUTPUTS)
    for output, (shape, mean, std, samples) in zip(outputs,
                                                   OFFICIAL_B0_OUTPUTS):
        assert tuple(output.shape) == shape
        assert output.mean().item() == pytest.approx(mean, abs=1e-5)
        assert output.std().item() == pytest.approx(std, abs=1e-5)
        torch.manual_seed(0)
        flat = output.flatten(1)
        index = torch.randint(0, flat.shape[1], (4, ))
        torch.testing.assert_close(flat[:, index], torch.tensor(samples),
                                   atol=1e-5, rtol=0)


@requires_official_dfine_fixture
def test_dfine_imagenet_file_loads_through_init_cfg(tmp_path):
    """D-FINE's ImageNet weights (``PPHGNetV2_B0_stage1.pth``: the official
    module's state dict, the layout of the fixture's backbone keys) load
    through ``init_cfg=dict(type='Pretrained', checkpoint=...)``: every
    tensor of HGNetv2-B0 with ``use_lab`` comes from the file, the
    learnable affines included."""
    fixture = read_checkpoint(OFFICIAL_DFINE_FIXTURE)
    state = {key[len('backbone.'):]: value.float()
             if value.is_floating_point() else value
             for key, value in fixture['state_dict'].items()
             if key.startswith('backbone.')}
    path = tmp_path / 'PPHGNetV2_B0_stage1.pth'
    torch.save(state, path)
    model = HGNetv2('B0', use_lab=True, init_cfg=dict(
        type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    assert len(own) == len(state)
    pairs = {
        'stem.stem1.lab.scale': 'stem.stem1.lab.scale',
        'stages.1.downsample.conv.weight': 'stages.1.0.conv.weight',
        'stages.2.blocks.1.layers.2.conv2.lab.bias':
        'stages.2.2.convs.2.conv2.lab.bias',
        'stages.3.blocks.0.aggregation.1.bn.running_var':
        'stages.3.1.excite.bn.running_var',
    }
    for official, ours in pairs.items():
        torch.testing.assert_close(own[ours], state[official])
