"""Install mmdet-odam. torch is deliberately not a requirement: users keep their own
(CUDA) build; ``tools/setup_env.sh`` installs the pinned CPU stack on a fresh machine."""
import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mmdet_odam', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmdet-odam',
    version=read_version(),
    description='ODAM instance-specific explanations, Odam-Train and Odam-NMS '
    'for MMDetection 3.x',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['mmdet_odam', 'mmdet_odam.*']),
    python_requires='>=3.8',
    install_requires=[
        'mmengine==0.10.7',
        'mmcv>=2.1.0,<2.2.0',
        'mmdet==3.3.0',
        'numpy',
        'pycocotools',
        'setuptools<82',  # mmengine resolves `mmdet::` bases with pkg_resources
        'tqdm',
    ],
    extras_require={'tests': ['pytest']},
    zip_safe=False,
)
