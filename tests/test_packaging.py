"""The package imports wherever mmdet does, installs as a wheel, and carries
what an OpenMMLab user looks for.

- With transformers 5 installed (the ``.venvs/transformers5`` environment of
  ``tools/setup_env.sh``), ``import rtdetr_zoo`` and ``import mmdet.models``
  work and ``tools/train.py`` trains; the same run logs to TensorBoard.
- With onnx, onnxruntime and onnxsim unimportable, the model code imports
  and runs and none of them is loaded.
- A wheel built from the checkout, installed in a fresh virtual
  environment, imports from that environment, builds a detector from the
  config it ships and lists every config through openmim's ``mim search``
  API with the official weights URLs and APs the configs and README name.
- ``LICENSE`` is the Apache-2.0 text that ``setup.py`` declares.
"""
import ast
import glob
import itertools
import json
import math
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from mmengine.config import Config

from .utils import REPO_ROOT, SMALL_DETECTOR

TRANSFORMERS5_PYTHON = osp.join(REPO_ROOT, '.venvs', 'transformers5', 'bin',
                                'python')
RACCOON_CONFIG = 'configs/rtdetr_r18vd_raccoon.py'
ONNX_MODULES = ('onnx', 'onnxruntime', 'onnxsim')

# Builds the raccoon detector (small decoder) from CONFIG (argv[1]) and runs
# inference on one raccoon image; prints the number of detections.
DETECT_SCRIPT = f"""
import sys
from mmdet.apis import inference_detector
from rtdetr_zoo.apis import load_detector
model = load_detector(sys.argv[1], cfg_options={SMALL_DETECTOR!r})
result = inference_detector(
    model, {osp.join(REPO_ROOT, 'data', 'raccoon', 'images',
                     'raccoon-1.jpg')!r})
print('detections', len(result.pred_instances.bboxes))
"""


def run_python(python, args, cwd=REPO_ROOT, timeout=600):
    """Run ``python args`` and return its stdout + stderr; a non-zero exit
    fails the test with the end of the output."""
    proc = subprocess.run([python, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f'{" ".join([python, *args])[:300]} exited with {proc.returncode}:\n'
        f'{output[-4000:]}')
    return output


@pytest.fixture(scope='module')
def transformers5_python():
    assert osp.isfile(TRANSFORMERS5_PYTHON), (
        f'{TRANSFORMERS5_PYTHON} not found: run `bash tools/setup_env.sh`, '
        'which creates the transformers 5 environment')
    return TRANSFORMERS5_PYTHON


def test_imports_with_transformers_5(transformers5_python):
    """``import rtdetr_zoo`` switches mmpretrain's multimodal models off (they
    fail to import with transformers 5) before mmdet imports mmpretrain, and
    says so; mmdet's models and transformers itself then import."""
    check = """
from importlib.metadata import version
major = int(version('transformers').split('.')[0])
assert major >= 5, version('transformers')
import rtdetr_zoo
from mmpretrain.utils import dependency
assert dependency.WITH_MULTIMODAL is False
import mmdet.models, mmpretrain.models, transformers
print('transformers', transformers.__version__)
"""
    output = run_python(transformers5_python, ['-c', check])
    assert 'transformers 5.' in output
    assert "mmpretrain 1.2's multimodal models" in output


@pytest.fixture(scope='module')
def transformers5_training_run(transformers5_python, tmp_path_factory):
    """Two iterations of ``tools/train.py`` (``tests/configs/
    raccoon_short.py``, batch 1) in the transformers 5 environment, with
    mmengine's ``TensorboardVisBackend`` beside the local one."""
    tmp = tmp_path_factory.mktemp('transformers5_run')
    config = tmp / 'raccoon_tensorboard.py'
    base = osp.join(REPO_ROOT, 'tests', 'configs', 'raccoon_short.py')
    config.write_text(
        f'_base_ = {base!r}\n'
        'train_dataloader = dict(batch_size=1)\n'
        'train_cfg = dict(max_iters=2)\n'
        'default_hooks = dict(checkpoint=dict(interval=2))\n'
        "visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
        "dict(type='TensorboardVisBackend')])\n")
    work_dir = tmp / 'work_dir'
    output = run_python(transformers5_python, [
        'tools/train.py', str(config), '--work-dir', str(work_dir)])
    return str(work_dir), output


def test_tools_train_with_transformers_5(transformers5_training_run):
    """``tools/train.py`` builds, trains and checkpoints the detector in
    the transformers 5 environment."""
    work_dir, output = transformers5_training_run
    assert 'Iter(train) [2/2]' in output
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))


def test_tensorboard_backend_writes_events(transformers5_training_run):
    """The TensorBoard events file holds the training loss of both
    iterations (read back with tensorboard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    work_dir, _ = transformers5_training_run
    events = glob.glob(
        osp.join(work_dir, '*', 'vis_data', 'events.out.tfevents.*'))
    assert len(events) == 1, events
    accumulator = EventAccumulator(events[0])
    accumulator.Reload()
    losses = accumulator.Scalars('loss')
    assert [event.step for event in losses] == [1, 2]
    assert all(math.isfinite(event.value) and event.value > 0
               for event in losses)


def test_model_code_imports_without_onnx():
    """A ``sys.meta_path`` finder makes onnx, onnxruntime and onnxsim
    unimportable; the package, its detectors and analysis import, a
    detector builds and runs, and none of the three was loaded."""
    blocked = f"""
import sys
BLOCKED = {ONNX_MODULES!r}

class BlockOnnx:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{{name}} is blocked by the test')
        return None

sys.meta_path.insert(0, BlockOnnx())
try:
    import onnx
except ImportError:
    pass
else:
    raise AssertionError('the blocker let onnx import')
import rtdetr_zoo, rtdetr_zoo.detectors, rtdetr_zoo.analysis
{DETECT_SCRIPT}
loaded = [m for m in sys.modules if m.split('.')[0] in BLOCKED]
assert not loaded, loaded
print('no onnx module loaded')
"""
    output = run_python(sys.executable, ['-c', blocked, RACCOON_CONFIG])
    assert 'no onnx module loaded' in output
    assert re.search(r'detections \d+', output)


# The package's model code (and the engine it loads checkpoints with):
# nothing in it may import the deploy package, not even inside a function.
MODEL_CODE_PACKAGES = ('backbones', 'datasets', 'dense_heads', 'detectors',
                       'engine', 'layers', 'losses', 'necks', 'structures',
                       'task_modules')


def deploy_imports(path):
    """The ``(line, statement)`` of every import of ``rtdetr_zoo.deploy``
    (absolute or relative, at any depth of the module) in the file."""
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [f'{node.module or ""}.{alias.name}'
                     for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any('deploy' in name.split('.') for name in names):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def test_detectors_load_neither_onnx_nor_the_deploy_code(tmp_path):
    """In a fresh interpreter where onnx and onnxruntime are installed,
    ``import rtdetr_zoo.detectors`` loads neither of them nor
    ``rtdetr_zoo.deploy``; and no model-code module imports the deploy
    package anywhere (a function-level import would escape the first
    check until the function runs)."""
    check = f"""
import importlib.util, sys
assert all(importlib.util.find_spec(name)
           for name in ('onnx', 'onnxruntime')), 'onnx is not installed'
import rtdetr_zoo.detectors
assert 'rtdetr_zoo.detectors.rtdetr' in sys.modules
loaded = sorted(m for m in sys.modules
                if m.split('.')[0] in {ONNX_MODULES!r}
                or m.startswith('rtdetr_zoo.deploy'))
print('loaded', loaded)
"""
    output = run_python(sys.executable, ['-c', check])
    assert 'loaded []' in output, output[-2000:]
    package = osp.join(REPO_ROOT, 'projects', 'rtdetr_zoo')
    files = [path for name in MODEL_CODE_PACKAGES for path in glob.glob(
        osp.join(package, name, '**', '*.py'), recursive=True)]
    assert len(files) > 40
    offending = {osp.relpath(path, package): found for path in files
                 if (found := deploy_imports(path))}
    assert not offending, offending
    # What the scan finds: every spelling, also inside a function.
    sample = tmp_path / 'sample.py'
    sample.write_text(
        'import os\nfrom .. import deploy\nimport rtdetr_zoo.deploy\n'
        'from rtdetr_zoo import deploy as d\n'
        'def f():\n    from ..deploy.onnx_export import export_onnx\n'
        'from ..engine import read_checkpoint\n')
    assert [line for line, _ in deploy_imports(sample)] == [2, 3, 4, 6]


def official_releases():
    """``{config stem: (weights URL, box AP or None)}`` of the released COCO
    weights the checkout names for a config: its header (``Official release
    (AP ...)`` and the URL of its ``tools/test.py`` command, or the Google
    Drive link after it), its own
    ``ultralytics_weights`` (the Ultralytics release that loads into it), or
    a README row ``| `config.py` | URL | AP / AP50 |``."""
    releases = {}
    for path in glob.glob(osp.join(REPO_ROOT, 'configs', '*.py')):
        with open(path) as f:
            text = f.read()
        header = ''.join(itertools.takewhile(
            lambda line: line.startswith('#'), text.splitlines(True)))
        ap = re.search(r'Official release \((\d+\.\d) AP', header)
        # The URL of the tools/test.py command, or, for a Google Drive
        # release (DEIM's), the line after the release's header.
        url = re.search(r'tools/test\.py \S+ \\\n#\s+(https://\S+)',
                        header) or re.search(
            r'converted on load:\n#\s+(https://drive\.google\.com/\S+)\n',
            header)
        stem = osp.basename(path)[:-3]
        if ap or url:
            assert ap and url, f'{path}: official AP or URL missing'
            releases[stem] = (url.group(1), float(ap.group(1)))
        elif re.search(r'^ultralytics_weights = ', text, re.M):
            releases[stem] = (Config.fromfile(path).ultralytics_weights, None)
    readme = open(osp.join(REPO_ROOT, 'README.md')).read()
    for stem, url, ap in re.findall(
            r'^\| `(\w+)\.py` \| (https://\S+\.pth) \|(?: (\d+\.\d) /)?',
            readme, re.M):
        known_url, known_ap = releases.get(stem, (url, None))
        assert known_url == url, f'{stem}: README and config URLs differ'
        releases[stem] = (url, float(ap) if ap else known_ap)
    return releases


def listed_configs():
    """Every top-level config of the checkout (not _base_ or deploy)."""
    return sorted(
        osp.relpath(p, REPO_ROOT)
        for p in glob.glob(osp.join(REPO_ROOT, 'configs', '*.py')))


def test_model_index_lists_every_config():
    """model-index.yml imports the per-family metafiles, which list every
    config (and only existing ones) once, official releases with their
    weights URL and COCO box AP and every other config without."""
    with open(osp.join(REPO_ROOT, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    models = []
    for metafile in imports:
        with open(osp.join(REPO_ROOT, metafile)) as f:
            content = yaml.safe_load(f)
        collections = {c['Name'] for c in content['Collections']}
        for model in content['Models']:
            assert model['In Collection'] in collections, model['Name']
            assert model['Name'] == osp.basename(model['Config'])[:-3]
            models.append(model)
    configs = [m['Config'] for m in models]
    assert sorted(configs) == listed_configs()
    releases = official_releases()
    assert len(releases) >= 13
    for model in models:
        release = releases.get(model['Name'])
        if release is None:
            assert 'Weights' not in model and 'Results' not in model, (
                model['Name'])
            continue
        assert model['Weights'] == release[0], model['Name']
        if release[1] is not None:
            assert model['Results'] == [{
                'Task': 'Object Detection', 'Dataset': 'COCO',
                'Metrics': {'box AP': release[1]}}], model['Name']


def test_wheel_installs_into_fresh_venv(tmp_path):
    """``pip wheel`` of the checkout, installed ``--no-deps`` into a fresh
    venv (mmdet and the rest from this environment's site-packages): the
    venv's copy is imported (not the editable checkout), it builds a
    detector from the config it ships in ``rtdetr_zoo/.mim`` and runs it,
    and ``mim search``'s API lists every config with its official weights
    URL and AP."""
    # A clean copy of what setup.py reads: no stale build/ folder of the
    # checkout ends up in the wheel, and nothing is written to the checkout.
    source = tmp_path / 'source'
    source.mkdir()
    for name in ('setup.py', 'LICENSE', 'model-index.yml'):
        shutil.copy2(osp.join(REPO_ROOT, name), source / name)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in ('configs', 'projects'):
        shutil.copytree(osp.join(REPO_ROOT, name), source / name,
                        ignore=ignore)
    dist = tmp_path / 'dist'
    run_python(sys.executable, [
        '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
        '-w', str(dist), str(source)], cwd=str(tmp_path))
    wheels = glob.glob(str(dist / 'rtdetr_zoo-*.whl'))
    assert len(wheels) == 1, wheels
    venv = tmp_path / 'venv'
    run_python(sys.executable, ['-m', 'venv', '--system-site-packages',
                                '--without-pip', str(venv)])
    python = str(venv / 'bin' / 'python')
    run_python(sys.executable, [
        '-m', 'pip', '--python', python, 'install', '--no-deps', '-q',
        '--disable-pip-version-check', wheels[0]], cwd=str(tmp_path))
    check = f"""
import json, math, os.path as osp, sys
import rtdetr_zoo
package = osp.dirname(osp.realpath(rtdetr_zoo.__file__))
assert package.startswith(osp.realpath(sys.prefix) + osp.sep), package
print('package', package)
sys.argv = [None, osp.join(package, '.mim', {RACCOON_CONFIG!r})]
{DETECT_SCRIPT}
from mim.commands.search import get_model_info
info = get_model_info('rtdetr_zoo', to_dict=True)
clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v
print('MODELS ' + json.dumps({{
    name: {{key: clean(row.get(key)) for key in ('config', 'weight',
                                                 'coco/box_ap')}}
    for name, row in info.items()}}))
"""
    output = run_python(python, ['-c', check], cwd=str(tmp_path))
    assert f'package {osp.realpath(venv)}' in output
    assert re.search(r'detections \d+', output)
    models = json.loads(output.split('MODELS ', 1)[1].splitlines()[0])
    assert sorted(m['config'] for m in models.values()) == listed_configs()
    releases = official_releases()
    for name, model in models.items():
        url, ap = releases.get(name, (None, None))
        assert model['weight'] == url, name
        if ap is not None or url is None:
            assert model['coco/box_ap'] == ap, name


def test_license_is_apache_2():
    """The root LICENSE is the Apache License 2.0 text, as setup.py
    declares (``license='Apache-2.0'``)."""
    with open(osp.join(REPO_ROOT, 'LICENSE')) as f:
        text = f.read()
    assert 'Apache License\n                           Version 2.0, ' \
           'January 2004' in text
    assert 'END OF TERMS AND CONDITIONS' in text
    assert len(text.split()) > 1500
    with open(osp.join(REPO_ROOT, 'setup.py')) as f:
        assert "license='Apache-2.0'" in f.read()
