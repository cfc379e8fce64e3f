"""Install the ``rtdetr_zoo`` package, whose source lives in ``projects/rtdetr_zoo``."""
from setuptools import setup

setup(
    name='rtdetr_zoo',
    version='0.1.0',
    description='RT-DETR and a zoo of RT-DETR variants for MMDetection 3.x',
    packages=['rtdetr_zoo'] + [
        f'rtdetr_zoo.{sub}' for sub in (
            'backbones', 'datasets', 'necks', 'layers', 'detectors',
            'dense_heads', 'losses', 'engine', 'deploy', 'analysis')
    ],
    package_dir={'rtdetr_zoo': 'projects/rtdetr_zoo'},
    python_requires='>=3.11',
    install_requires=['mmdet==3.3.0', 'mmpretrain==1.2.0'],
    license='Apache-2.0',
)
