"""One timed unit of work of a config's detector on the CPU: an inference
pass or a training step, with optional bf16 autocast and channels-last.

This module imports nothing from ``rtdetr_zoo`` but
:func:`rtdetr_zoo.apis.load_detector`, so that
``python timed_step.py --worker ...`` can run against *another* checkout of
the package (``PYTHONPATH=<worktree>/projects``): that is how
``tools/analysis/benchmark.py --compare REV`` times the code of revision REV
and of the working tree alternately, each in its own process
(:func:`serve`).

Modes:

- ``'infer'``: ``model.predict(inputs, data_samples)`` under
  ``torch.no_grad`` (part ``'detector'``), or ``model.backbone(images)``
  (part ``'backbone'``), in eval mode;
- ``'train'``: forward + loss (``model.loss``) + backward + optimizer step
  through the optim wrapper the config builds (its learning rates,
  multipliers and gradient clipping), on random images with random ground
  truth boxes (3 per image), in training mode.

Backend ``'onnxruntime'`` (inference of the detector) exports the model end
to end and times the ONNX Runtime session instead
(:class:`OnnxRuntimeRunner`).
"""
import argparse
import contextlib
import json
import logging
import resource
import sys
import tempfile
import threading
import time
from collections import Counter

import psutil
import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample
from rtdetr_zoo.apis import load_detector

PARTS = ('backbone', 'detector')
MODES = ('infer', 'train')
BACKENDS = ('pytorch', 'onnxruntime')
# Lines of the worker protocol start with this (mmengine logs go to stdout
# too).
PROTOCOL_PREFIX = '@@timed_step '

# Host-work counting (:func:`count_host_work`), as ../shared/gpu/opcount.py
# counts: aten operators that move no data (views, metadata) launch no
# kernel on a GPU and are not counted; these two read a device value on the
# host, which waits for the GPU to finish all queued work.
NOT_COUNTED = frozenset({
    'aten::view', 'aten::reshape', 'aten::as_strided', 'aten::empty',
    'aten::t', 'aten::transpose', 'aten::permute', 'aten::expand',
    'aten::slice', 'aten::select', 'aten::unsqueeze', 'aten::squeeze',
    'aten::detach', 'aten::alias', 'aten::_unsafe_view',
    'aten::empty_strided', 'aten::resolve_conj', 'aten::resolve_neg',
    'aten::lift_fresh', 'aten::result_type', 'aten::is_nonzero',
    'aten::item', 'aten::size', 'aten::stride', 'aten::contiguous',
    'aten::flatten', 'aten::split', 'aten::unbind', 'aten::chunk',
    'aten::narrow', 'aten::unflatten', 'aten::_reshape_alias',
    'aten::view_as', 'aten::numpy_T', 'aten::empty_like'})
SYNC_OPS = frozenset({'aten::nonzero', 'aten::_local_scalar_dense'})


def count_host_work(call):
    """The host-side work of one ``call()`` (after one untimed warm-up call):
    the aten operators it runs, each at least one kernel launch on a GPU
    (views and metadata-only operators excluded, nested operators counted
    too), and its synchronisation points (``nonzero``, and
    ``_local_scalar_dense``: ``.item()``, ``.tolist()``, ``bool()`` of a
    tensor), each a stall of the host until the GPU is idle. On a CPU these
    counts are exact and independent of the machine's load: the GPU's cost
    driver at real-time model sizes, counted without a GPU.

    Returns:
        dict: ``aten_calls`` (int), ``syncs`` (int) and ``ops`` (dict of
        operator name -> calls, syncs included, most frequent first).
    """
    from torch.profiler import ProfilerActivity, profile
    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    names = [e.name for e in prof.events() if e.name.startswith('aten::')]
    ops = Counter(n for n in names if n not in NOT_COUNTED)
    syncs = sum(ops[name] for name in SYNC_OPS)
    return dict(aten_calls=sum(ops.values()) - ops['aten::_local_scalar_dense'],
                syncs=syncs, ops=dict(ops.most_common()))


def build_model(config, part, cfg_options=None):
    """``config``'s detector (eval mode, CPU, random weights) or, for part
    ``'backbone'``, its backbone."""
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    model = load_detector(config, cfg_options=cfg_options)
    return model.backbone if part == 'backbone' else model


def make_inputs(model, part, batch, height, width, seed=0, num_gts=0):
    """Random inputs for ``model``.

    Args:
        num_gts (int): Random ground truth boxes per image (training).

    Returns:
        tuple: for part ``'backbone'``, images (batch, 3, height, width) and
        ``None``; for ``'detector'``, the batch through the model's data
        pre-processor (normalised and padded as in the test loop):
        ``(inputs, data_samples)``.
    """
    gen = torch.Generator().manual_seed(seed)
    if part == 'backbone':
        return torch.randn(batch, 3, height, width, generator=gen), None
    images = [
        torch.randint(0, 256, (3, height, width), generator=gen,
                      dtype=torch.uint8) for _ in range(batch)
    ]
    samples = []
    for _ in range(batch):
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width),
            scale_factor=(1.0, 1.0)))
        if num_gts:
            size = torch.tensor([width, height])
            xy = torch.rand(num_gts, 2, generator=gen) * size * 0.6
            wh = (torch.rand(num_gts, 2, generator=gen) * 0.3 + 0.1) * size
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1),
                labels=torch.randint(0, model.bbox_head.num_classes,
                                     (num_gts, ), generator=gen))
        samples.append(sample)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                   training=False)
    return data['inputs'], data['data_samples']


class OnnxRuntimeRunner:
    """ONNX Runtime (CPU): the detector is exported end to end to a
    temporary file (:func:`rtdetr_zoo.deploy.export_onnx`: pre-processing,
    deploy-fused modules, top-k; fixed input size and batch) and the session
    runs with as many threads as torch uses. Returns the graph's outputs
    ``(labels, boxes, scores)``."""

    def __init__(self, model, inputs, samples):
        # deploy/ imports onnx: loaded only for the onnxruntime backend.
        from rtdetr_zoo.deploy import create_ort_session, export_onnx
        if samples is None:
            raise ValueError('--backend onnxruntime times the whole detector '
                             '(the exported graph); use --part detector')
        height, width = samples[0].img_shape
        preprocessor = model.data_preprocessor
        images = inputs[..., :height, :width]
        if getattr(preprocessor, '_enable_normalize', False):
            images = images * preprocessor.std + preprocessor.mean
        self.images = images.contiguous(
            memory_format=torch.contiguous_format).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            path = f'{tmp}/model.onnx'
            export_onnx(model, path, (height, width),
                        batch_size=inputs.shape[0])
            self.session = create_ort_session(path, torch.get_num_threads())

    def __call__(self):
        return self.session.run(None, {'images': self.images})


def autocast(bf16):
    """``torch.autocast('cpu', bfloat16)`` when ``bf16``, else a no-op.

    :func:`rtdetr_zoo.apis.bf16_autocast` does the same, but this module
    must also run against checkouts that predate it (see the module doc).
    """
    if bf16:
        return torch.autocast('cpu', dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TimedStep:
    """A callable doing one unit of work (see the module doc); build once,
    call once per timed run.

    Args:
        config (str): Config file.
        mode (str): ``'infer'`` or ``'train'``.
        part (str): ``'backbone'`` or ``'detector'`` (``'train'`` needs
            ``'detector'``).
        batch (int): Images per call.
        shape (tuple[int, int]): Image size (H, W).
        bf16 (bool): Run the forward (and loss) under bf16 autocast.
        channels_last (bool): Convert the model's 4-D weights and the input
            images to ``torch.channels_last``.
        cfg_options (dict, optional): Config overrides.
        backend (str): ``'pytorch'`` or ``'onnxruntime'`` (inference only,
            no bf16 or channels-last).
    """

    def __init__(self, config, mode='infer', part='detector', batch=1,
                 shape=(640, 640), bf16=False, channels_last=False,
                 cfg_options=None, backend='pytorch'):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got '
                             f'{backend!r}')
        if backend == 'onnxruntime' and (mode != 'infer' or bf16
                                         or channels_last):
            raise ValueError('the ONNX Runtime backend times inference of '
                             'the exported graph: no train mode, bf16 or '
                             'channels-last')
        if mode == 'train' and part != 'detector':
            raise ValueError("mode 'train' times the whole detector; use "
                             "part 'detector'")
        self.mode, self.bf16 = mode, bf16
        model = build_model(config, part, cfg_options)
        self.params = sum(p.numel() for p in model.parameters())
        self.inputs, self.samples = make_inputs(
            model, part, batch, *shape, num_gts=3 if mode == 'train' else 0)
        if channels_last:
            model.to(memory_format=torch.channels_last)
            self.inputs = self.inputs.contiguous(
                memory_format=torch.channels_last)
        self.model = model
        self.onnx = None
        if backend == 'onnxruntime':
            self.onnx = OnnxRuntimeRunner(model, self.inputs, self.samples)
        self.optim_wrapper = None
        if mode == 'train':
            model.train()
            logger = MMLogger.get_current_instance()
            level = logger.level
            logger.setLevel(logging.WARNING)  # one line per parameter
            try:
                self.optim_wrapper = build_optim_wrapper(
                    model, model.cfg.optim_wrapper)
            finally:
                logger.setLevel(level)

    def __call__(self):
        if self.onnx is not None:
            return self.onnx()
        if self.mode == 'train':
            with autocast(self.bf16):
                losses = self.model.loss(self.inputs, self.samples)
            loss, _ = self.model.parse_losses(losses)
            self.optim_wrapper.update_params(loss)
            return loss.detach()
        with torch.no_grad(), autocast(self.bf16):
            if self.samples is None:
                return self.model(self.inputs)
            return self.model.predict(self.inputs, self.samples)


class PeakRSS:
    """Samples this process's RSS in a background thread; keeps the max
    (bytes) in ``peak``."""

    def __init__(self, interval=0.002):
        self.interval = interval
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def reply(**message):
    """Write one protocol line to stdout."""
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps(message) + '\n')
    sys.stdout.flush()


def serve(step):
    """Worker loop: answer commands read from stdin, one per line.

    ``run`` -> ``{"seconds": ...}`` (one timed call of ``step``);
    ``memory`` -> ``{"peak_rss_growth_mib", "baseline_rss_mib",
    "max_rss_mib"}`` over all runs so far; ``count`` -> the host work of one
    call (:func:`count_host_work`); ``quit`` -> exit.
    """
    baseline = psutil.Process().memory_info().rss
    reply(ready=True, params=step.params,
          threads=torch.get_num_threads())
    with PeakRSS() as rss:
        for line in sys.stdin:
            command = line.strip()
            if command == 'run':
                start = time.perf_counter()
                step()
                reply(seconds=time.perf_counter() - start)
            elif command == 'memory':
                reply(peak_rss_growth_mib=(rss.peak - baseline) / 2**20,
                      baseline_rss_mib=baseline / 2**20,
                      max_rss_mib=resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1024)
            elif command == 'count':
                reply(**count_host_work(step))
            elif command == 'quit':
                break
            else:
                reply(error=f'unknown command {command!r}')


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('config')
    parser.add_argument('--mode', choices=MODES, default='infer')
    parser.add_argument('--part', choices=PARTS, default='detector')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--shape', type=int, nargs=2, default=[640, 640])
    parser.add_argument('--bf16', action='store_true')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--backend', choices=BACKENDS, default='pytorch')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--cfg-options', default='{}',
                        help='config overrides as a JSON object')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    serve(TimedStep(args.config, args.mode, args.part, args.batch,
                    tuple(args.shape), args.bf16, args.channels_last,
                    json.loads(args.cfg_options) or None, args.backend))


if __name__ == '__main__':
    main()
