"""mmdet's own inference and checkpoint APIs on a checkpoint written by our
tools/train.py: ``DetInferencer``, ``init_detector`` +
``inference_detector``, what mmdet 3.3's ``demo/image_demo.py`` runs,
``mim test``, mmdet's ``publish_model.py``, ``--resume``,
``tools/dist_test.sh``; checkpoints from before the runner encoded their
numpy / HistoryBuffer objects; and the refusal of arbitrary pickled globals
by every loader.

torch.load keeps its weights-only default throughout (the opt-out variable
is removed from the subprocesses' environment).
"""
import json
import os
import os.path as osp
import pickle
import re
import socket
import subprocess
import sys

import cv2
import mmdet
import mmengine
import pytest
import torch
from mmdet.apis import DetInferencer, inference_detector, init_detector
from mmengine.logging import HistoryBuffer

from rtdetr_zoo.engine import read_checkpoint

from .test_checkpoint import (globals_beyond_torch_defaults,
                              without_registered_safe_globals)
from .utils import REPO_ROOT

CONFIG = osp.join(REPO_ROOT, 'tests', 'configs', 'raccoon_short.py')
IMAGE = osp.join(REPO_ROOT, 'data', 'raccoon', 'images', 'raccoon-1.jpg')
MMDET_TOOLS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')
# Two training iterations; the checkpoint of the second.
TRAIN_OPTIONS = ['train_cfg.max_iters=2',
                 'default_hooks.checkpoint.interval=2']


def _env():
    return {k: v for k, v in os.environ.items()
            if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}


def _run(args, timeout=600, env=None):
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return out


def _python(code, timeout=300):
    """Run ``code`` in a fresh interpreter; its stdout."""
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT,
                          env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc.stdout


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A work dir of 2 training iterations of tests/configs/raccoon_short.py
    by tools/train.py, its checkpoint and log."""
    work_dir = str(tmp_path_factory.mktemp('mmdet_apis_run'))
    log = _run([sys.executable, 'tools/train.py', CONFIG, '--work-dir',
                work_dir, '--cfg-options', *TRAIN_OPTIONS])
    return work_dir, osp.join(work_dir, 'iter_2.pth'), log


@pytest.fixture(scope='module')
def old_style(trained, tmp_path_factory):
    """The checkpoint as mmengine 0.10.7's Runner wrote it before
    RTDETRRunner encoded it: raw HistoryBuffers, numpy arrays and scalars."""
    checkpoint = read_checkpoint(trained[1])
    assert isinstance(checkpoint['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    path = str(tmp_path_factory.mktemp('old_style') / 'old_style.pth')
    torch.save(checkpoint, path)
    return path


def _assert_weights_loaded(model, checkpoint_path):
    state = read_checkpoint(checkpoint_path)['state_dict']
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key].cpu(), value), key
    assert model.dataset_meta['classes'] == ('raccoon', )


def test_runner_encodes_after_every_other_hook(trained):
    """RTDETRRunner lists WeightsOnlyCheckpointHook last among the
    before_save_checkpoint hooks, after RandomStateHook."""
    section = re.search(r'before_save_checkpoint:\n(.*?)\n -{5,}',
                        trained[2], re.S)
    hooks = section[1].split('\n')
    assert 'RandomStateHook' in section[1]
    assert 'WeightsOnlyCheckpointHook' in hooks[-1], hooks


def test_checkpoint_loads_weights_only_without_rtdetr_zoo(trained):
    """A fresh interpreter that imports only torch reads the checkpoint
    with torch.load's default weights_only=True and no allowance."""
    code = f"""
import json, sys, torch
ckpt = torch.load({trained[1]!r}, map_location='cpu')
loss = ckpt['message_hub']['log_scalars']['train/loss']
json.dump(dict(modules=[m for m in sys.modules
                        if m.split('.')[0] in ('rtdetr_zoo', 'mmengine')],
               safe_globals=list(map(str,
                                     torch.serialization.get_safe_globals())),
               iter=ckpt['meta']['iter'],
               classes=ckpt['meta']['dataset_meta']['classes'],
               loss=[loss['__rtdetr_zoo_encoded__'],
                     loss['log_history']['data'].tolist()],
               numpy_state=ckpt['random_state']['numpy'][1]['dtype'],
               tensors=len(ckpt['state_dict'])), sys.stdout)
"""
    result = json.loads(_python(code))
    assert result['modules'] == []
    assert not [entry for entry in result['safe_globals']
                if re.search('numpy|mmengine|getattr', entry)]
    assert result['iter'] == 2 and result['classes'] == ['raccoon']
    assert result['loss'][0] == 'mmengine.HistoryBuffer'
    assert len(result['loss'][1]) == 2
    assert result['numpy_state'] == '<u4'
    assert result['tensors'] > 100
    assert globals_beyond_torch_defaults(trained[1]) == []


def test_det_inferencer_predicts_with_the_checkpoint_classes(trained):
    inferencer = DetInferencer(model=CONFIG, weights=trained[1],
                               device='cpu')
    # Without the checkpoint's meta the classes would be COCO's 80.
    _assert_weights_loaded(inferencer.model, trained[1])
    result = inferencer(IMAGE, pred_score_thr=0.0)
    assert len(result['predictions']) == 1
    prediction = result['predictions'][0]
    assert len(prediction['bboxes']) == len(prediction['scores']) == 100
    assert set(prediction['labels']) == {0}
    assert prediction['scores'] == sorted(prediction['scores'], reverse=True)


def test_init_detector_and_inference_detector(trained):
    model = init_detector(CONFIG, trained[1], device='cpu')
    _assert_weights_loaded(model, trained[1])
    result = inference_detector(model, IMAGE)
    height, width = cv2.imread(IMAGE).shape[:2]
    boxes = result.pred_instances.bboxes
    assert boxes.shape == (100, 4)
    assert result.ori_shape == (height, width)
    assert (result.pred_instances.labels == 0).all()


# mmdet 3.3's demo/image_demo.py is not installed with mmdet (neither its
# wheel nor its sdist ship demo/), so this runs the calls it makes: a
# DetInferencer from the config and weights, test_cfg.chunked_size set, and
# the call with out_dir that writes vis/ and preds/.
IMAGE_DEMO = """
from mmdet.apis import DetInferencer
inferencer = DetInferencer(model={config!r}, weights={weights!r},
                           device='cpu', palette='none')
inferencer.model.test_cfg.chunked_size = -1
inferencer(inputs={image!r}, out_dir={out_dir!r}, texts=None,
           pred_score_thr=0.3, batch_size=1, show=False, no_save_vis=False,
           no_save_pred=False, print_result=False, custom_entities=False,
           tokens_positive=None)
"""


def test_mmdet_image_demo_writes_an_output_image(trained, tmp_path):
    out_dir = str(tmp_path / 'outputs')
    _python(IMAGE_DEMO.format(config=CONFIG, weights=trained[1],
                              image=IMAGE, out_dir=out_dir))
    drawn = cv2.imread(osp.join(out_dir, 'vis', 'raccoon-1.jpg'))
    assert drawn is not None
    assert drawn.shape == cv2.imread(IMAGE).shape
    with open(osp.join(out_dir, 'preds', 'raccoon-1.json')) as f:
        prediction = json.load(f)
    assert len(prediction['bboxes']) == 100


def test_mim_test_evaluates_the_checkpoint(trained, tmp_path):
    out = _run(['mim', 'test', 'mmdet', CONFIG, '--checkpoint', trained[1],
                '--work-dir', str(tmp_path), '--cfg-options',
                'test_dataloader.dataset.indices=2'])
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in out
    assert 'coco/bbox_mAP:' in out


def test_mmdet_publish_model_writes_a_loadable_file(trained, tmp_path):
    """mmdet's publish_model.py (torch.load without rtdetr_zoo) keeps meta
    and state_dict; the published file loads through init_detector."""
    out = _run([sys.executable, osp.join(MMDET_TOOLS, 'model_converters',
                                         'publish_model.py'),
                trained[1], str(tmp_path / 'published.pth')])
    published = re.search(r'The published model is saved at (\S+)\.pth\.',
                          out)[1] + '.pth'
    assert re.fullmatch(r'.*published-[0-9a-f]{8}\.pth', published)
    # The script renames its output in a background `mv`.
    subprocess.run(['bash', '-c', f'for i in $(seq 100); do [ -f '
                    f'"{published}" ] && exit; sleep 0.1; done'],
                   timeout=30, check=True)
    with without_registered_safe_globals():
        assert sorted(torch.load(published)) == ['meta', 'state_dict']
    model = init_detector(CONFIG, published, device='cpu')
    _assert_weights_loaded(model, trained[1])


def test_resume_continues_and_restores_the_message_hub(trained, tmp_path):
    """--resume from the checkpoint trains one more iteration (the config
    is iteration-based) with the message hub and random states restored:
    the next checkpoint's loss history starts with the first run's."""
    work_dir = str(tmp_path)
    out = _run([sys.executable, 'tools/train.py', CONFIG, '--work-dir',
                work_dir, '--resume', trained[1], '--cfg-options',
                'train_cfg.max_iters=3',
                'default_hooks.checkpoint.interval=1'])
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Random states restored from the checkpoint' in out
    assert 'Iter(train) [3/3]' in out
    assert globals_beyond_torch_defaults(osp.join(work_dir,
                                                  'iter_3.pth')) == []
    before = read_checkpoint(trained[1])['message_hub']
    after = read_checkpoint(osp.join(work_dir, 'iter_3.pth'))['message_hub']
    for key, buffer in before['log_scalars'].items():
        logs, counts = after['log_scalars'][key].data
        assert logs.dtype == buffer.data[0].dtype, key
        assert len(logs) == len(buffer.data[0]) + 1, key
        assert (logs[:-1] == buffer.data[0]).all(), key
        assert (counts[:-1] == buffer.data[1]).all(), key
    assert after['runtime_info']['iter'] == before['runtime_info']['iter'] + 1


def test_old_style_checkpoint_loads_through_init_detector(old_style):
    """Refused by torch.load without rtdetr_zoo, read by mmdet's
    init_detector once rtdetr_zoo is imported (as every config does)."""
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in (
        globals_beyond_torch_defaults(old_style))
    code = f"""
import pickle, torch
try:
    torch.load({old_style!r})
except pickle.UnpicklingError as err:
    print('refused:', str(err).split('WeightsUnpickler error:')[1][:200])
"""
    assert re.search(r'refused:\s+Unsupported global: GLOBAL '
                     r'(numpy|mmengine)', _python(code))
    model = init_detector(CONFIG, old_style, device='cpu')
    _assert_weights_loaded(model, old_style)
    assert isinstance(
        torch.load(old_style)['message_hub']['log_scalars']['train/loss'],
        HistoryBuffer)


class RunsCode:
    """Unpickling it would call ``function(argument)``."""

    def __init__(self, function, argument):
        self.function = function
        self.argument = argument

    def __reduce__(self):
        return self.function, (self.argument, )


# What each payload's global is called in torch's refusal (torch drops the
# ``builtins.`` of builtins).
PAYLOADS = {
    'os.system': (os.system, 'touch {marker}',
                  f'{os.system.__module__}.system'),
    'eval': (eval, "__import__('pathlib').Path({marker!r}).touch()", 'eval'),
}


@pytest.fixture(params=sorted(PAYLOADS))
def malicious(request, tmp_path):
    """A checkpoint with model weights and a pickled call (``os.system``,
    a module torch blocks; ``eval``, a builtin torch does not allow) that
    would create ``marker``; the global's name as torch reports it."""
    function, command, name = PAYLOADS[request.param]
    marker = tmp_path / 'marker'
    path = str(tmp_path / 'malicious.pth')
    torch.save(dict(meta=dict(dataset_meta=dict(classes=('raccoon', ))),
                    state_dict={'w': torch.zeros(1)},
                    payload=RunsCode(function,
                                     command.format(marker=str(marker)))),
               path)
    return path, marker, re.escape(name)


def test_arbitrary_global_refused_by_torch_load(malicious):
    path, marker, name = malicious
    with pytest.raises(pickle.UnpicklingError, match=f'GLOBAL {name} '):
        torch.load(path)
    assert not marker.exists()


def test_arbitrary_global_refused_by_init_detector(malicious):
    path, marker, name = malicious
    with pytest.raises(pickle.UnpicklingError, match=f'GLOBAL {name} '):
        init_detector(CONFIG, path, device='cpu')
    assert not marker.exists()


def test_arbitrary_global_refused_by_read_checkpoint(malicious):
    path, marker, name = malicious
    with pytest.raises(RuntimeError, match=r'cannot read checkpoint .*'
                       rf'malicious\.pth: it pickles {name}, which'):
        read_checkpoint(path)
    assert not marker.exists()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_test_two_processes(trained, tmp_path):
    """tools/dist_test.sh: 2 CPU processes (gloo) evaluate 4 val images
    (2 each); rank 0 gathers all 4 predictions."""
    preds = str(tmp_path / 'preds.pkl')
    env = dict(_env(), PORT=str(_free_port()), OMP_NUM_THREADS='1')
    # mmengine gathers the ranks' results through a temporary folder in
    # .dist_test/ of the working directory (the repo root), left empty.
    collect_dir = osp.join(REPO_ROOT, '.dist_test')
    existed = osp.isdir(collect_dir)
    try:
        out = _run(['bash', 'tools/dist_test.sh', CONFIG, trained[1], '2',
                    '--work-dir', str(tmp_path), '--out', preds,
                    '--cfg-options', 'test_dataloader.dataset.indices=4'],
                   env=env)
    finally:
        if not existed and osp.isdir(collect_dir) and not os.listdir(
                collect_dir):
            os.rmdir(collect_dir)
    assert 'on the CPU with gloo, rank 0 of 2' in out
    assert 'Iter(test) [1/1]' in out
    assert 'coco/bbox_mAP:' in out
    results = mmengine.load(preds)
    assert len({r['img_id'] for r in results}) == 4
