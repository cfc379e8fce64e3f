"""What only a CUDA device shows, compared with the CPU on the same weights
and inputs: RT-DETRv2's deformable attention (bilinear and discrete
sampling, and under bf16 autocast), and a detector's bf16 inference and bf16
training step (mmcv's deformable attention kernel has no bf16: rtdetr_zoo
runs it in float32, ``CPUFastMultiScaleDeformableAttention.mmcv_forward``).

Each test runs on device ``'cpu'`` (also in CI, which checks the tests
themselves) and ``'cuda'``. The CUDA runs carry the ``cuda`` marker, which
``pytest.ini`` deselects by default; on a machine with a GPU (and mmcv built
with its CUDA ops, ``../shared/gpu/README.md``):

    python -m pytest tests/test_device.py -m cuda
"""
import pytest
import torch

from rtdetr_zoo.analysis import make_inputs
from rtdetr_zoo.apis import load_detector
from rtdetr_zoo.layers import MultiScaleDeformableAttentionV2

from .utils import config_path


@pytest.fixture(params=['cpu', pytest.param('cuda', marks=pytest.mark.cuda)])
def device(request):
    """The device under test; asking for ``cuda`` where there is none is an
    error, not a skip."""
    if request.param == 'cuda' and not torch.cuda.is_available():
        pytest.fail(f'-m cuda: no CUDA device on this machine (torch '
                    f'{torch.__version__})')
    return request.param


def _attention_inputs(device, dims=32):
    """Two images' queries (2, 7, dims) attending a 3-level value map
    (10x12, 5x6, 3x3) around boxes in the middle of the image."""
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[10, 12], [5, 6], [3, 3]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    inputs = dict(
        query=torch.randn(2, 7, dims, generator=gen),
        value=torch.randn(2, int(shapes.prod(1).sum()), dims, generator=gen),
        reference_points=(torch.rand(2, 7, 1, 4, generator=gen) * 0.6 +
                          0.2).expand(-1, -1, 3, -1),
        spatial_shapes=shapes, level_start_index=starts)
    return {k: v.to(device) for k, v in inputs.items()}


@pytest.mark.parametrize('method', ['default', 'discrete'])
def test_v2_attention_on_the_device_equals_the_cpu(device, method):
    """float32 on the device within 1e-4 of the CPU; bf16 autocast within
    5 % of the output's range."""
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=[3, 6, 3], method=method,
        dropout=0.0).eval()
    for param in attn.parameters():
        param.data.normal_(0, 0.1)
    with torch.no_grad():
        expected = attn(**_attention_inputs('cpu'))
        attn.to(device)
        got = attn(**_attention_inputs(device)).cpu()
        with torch.autocast(device, dtype=torch.bfloat16):
            got_bf16 = attn(**_attention_inputs(device)).float().cpu()
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-4
    assert (got_bf16 - expected).abs().max() <= 0.05 * scale


def test_detector_bf16_inference_and_training_step(device):
    """R18-vd (random weights) on a batch of 2 random 320x320 images: the
    top score of each image under bf16 autocast within 0.05 of float32, and
    a bf16 training step with a finite loss that reaches the weights."""
    model = load_detector(config_path('rtdetr_r18vd_raccoon'), device=device)
    inputs, samples = make_inputs(model, 'detector', 2, 320, 320, num_gts=3)
    with torch.no_grad():
        reference = model.predict(inputs, samples)
        with torch.autocast(device, dtype=torch.bfloat16):
            results = model.predict(inputs, samples)
    for bf16, fp32 in zip(results, reference):
        assert abs(float(bf16.pred_instances.scores[0]) -
                   float(fp32.pred_instances.scores[0])) <= 0.05
    model.train()
    with torch.autocast(device, dtype=torch.bfloat16):
        losses = model.loss(inputs, samples)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert torch.isfinite(total)
    weight = model.decoder.layers[0].ffn.layers[1].weight
    assert weight.grad is not None and torch.isfinite(weight.grad).all()
