"""Checks that need an accelerator, run on one when a session has it
(``tools/analysis/device_checks.py``): what CI, which has no GPU, cannot
run. Each check compares the device against the CPU on the same weights and
inputs and returns ``(name, passed, detail)``.

- ``v2_attention``: RT-DETRv2's deformable attention (bilinear and
  discrete) on the device equals the CPU to 1e-4, and runs under bf16
  autocast within 5 % of the float32 output's range;
- ``bf16_detector``: a detector predicts under bf16 autocast (mmcv's
  deformable attention kernel has no bf16: the float32 fallback of
  :meth:`~rtdetr_zoo.layers.CPUFastMultiScaleDeformableAttention.mmcv_forward`)
  and takes a bf16 training step with finite losses.
"""
import torch

from ..apis import load_detector
from ..layers import MultiScaleDeformableAttentionV2


def _attention_inputs(device, dims=32):
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


def check_v2_attention(device):
    """RT-DETRv2 attention on ``device`` against the CPU."""
    results = []
    for method in ('default', 'discrete'):
        torch.manual_seed(0)
        attn = MultiScaleDeformableAttentionV2(
            32, num_heads=4, num_levels=3, num_points=[3, 6, 3],
            method=method, dropout=0.0).eval()
        for param in attn.parameters():
            param.data.normal_(0, 0.1)
        with torch.no_grad():
            expected = attn(**_attention_inputs('cpu'))
            attn.to(device)
            got = attn(**_attention_inputs(device)).cpu()
            with torch.autocast(torch.device(device).type,
                                dtype=torch.bfloat16):
                got_bf16 = attn(**_attention_inputs(device)).float().cpu()
        error = (got - expected).abs().max().item()
        bf16_error = (got_bf16 - expected).abs().max().item()
        scale = expected.abs().max().item()
        results.append((f'v2_attention[{method}]',
                        error <= 1e-4 and bf16_error <= 0.05 * scale,
                        f'max |device - cpu| {error:.2e}, bf16 '
                        f'{bf16_error:.2e} (output range {scale:.2f})'))
    return results


def check_bf16_detector(config, device):
    """``config``'s detector (random weights) on ``device``: bf16 inference
    and a bf16 training step, on a batch of 2 random 320x320 images."""
    model = load_detector(config, device=device)
    from .timed_step import make_inputs
    inputs, samples = make_inputs(model, 'detector', 2, 320, 320,
                                  num_gts=3)
    device_type = torch.device(device).type
    model.eval()
    with torch.no_grad():
        reference = model.predict(inputs, samples)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            results = model.predict(inputs, samples)
    top = [float(r.pred_instances.scores[0]) for r in results]
    top_ref = [float(r.pred_instances.scores[0]) for r in reference]
    model.train()
    with torch.autocast(device_type, dtype=torch.bfloat16):
        losses = model.loss(inputs, samples)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    finite = bool(torch.isfinite(total))
    close = all(abs(a - b) <= 0.05 for a, b in zip(top, top_ref))
    return [('bf16_detector', finite and close,
             f'top scores bf16 {top} vs fp32 {top_ref}; bf16 training loss '
             f'{float(total):.3f}')]


def run_device_checks(device, config):
    """Every check on ``device``; a list of ``(name, passed, detail)``."""
    return check_v2_attention(device) + check_bf16_detector(config, device)
