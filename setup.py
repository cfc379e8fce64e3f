"""Install ``rtdetr_zoo``, whose source lives in ``projects/rtdetr_zoo``.

A built package (``pip install .``, a wheel) also carries the configs and the
model index in ``rtdetr_zoo/.mim/``: openmim's ``mim search rtdetr_zoo``
reads ``<installed package>/.mim/model-index.yml`` (openmim 0.3.9,
``mim/commands/search.py``), as it does for mmdet. Extras: ``deploy`` (ONNX
export, simplification and ONNX Runtime, ``tools/deploy/``) and
``tensorboard`` (mmengine's ``TensorboardVisBackend``).
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

REPO_ROOT = osp.dirname(osp.abspath(__file__))
# Files and folders of the checkout copied into rtdetr_zoo/.mim/.
MIM_ITEMS = ('model-index.yml', 'configs')


class BuildPyWithMimFiles(build_py):
    """``build_py`` that also copies :data:`MIM_ITEMS` into the built
    package's ``.mim`` folder (not for editable installs, whose package is
    the checkout itself)."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim_dir = osp.join(self.build_lib, 'rtdetr_zoo', '.mim')
        os.makedirs(mim_dir, exist_ok=True)
        for name in MIM_ITEMS:
            source, target = osp.join(REPO_ROOT, name), osp.join(mim_dir, name)
            if osp.isdir(source):
                shutil.copytree(
                    source, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copy2(source, target)


setup(
    name='rtdetr_zoo',
    version='0.1.0',
    description='RT-DETR and a zoo of RT-DETR variants for MMDetection 3.x',
    packages=['rtdetr_zoo'] + [
        f'rtdetr_zoo.{sub}' for sub in find_packages('projects/rtdetr_zoo')
    ],
    package_dir={'rtdetr_zoo': 'projects/rtdetr_zoo'},
    cmdclass={'build_py': BuildPyWithMimFiles},
    python_requires='>=3.11',
    # What the package imports at top level (onnx and onnxruntime are
    # imported by rtdetr_zoo.deploy only). The checkout's tools/analysis/
    # also needs psutil, which tools/setup_env.sh installs.
    install_requires=[
        'mmdet==3.3.0',
        'mmpretrain==1.2.0',
        'mmengine>=0.10.0,<1.0.0',
        'mmcv>=2.0.0,<2.2.0',
        'torch>=2.0',
        'numpy',
        'scipy',
        'pillow',
        'opencv-python',
        'pyyaml',
    ],
    extras_require={
        'deploy': ['onnx==1.23.2', 'onnxruntime==1.32.0', 'onnxsim==0.8.1'],
        'tensorboard': ['tensorboard==2.21.0'],
    },
    license='Apache-2.0',
)
