"""The second frame of a training pair (distilled gears' clean copy,
stability training's distorted copy), prepared as the inputs are: one
definition for both segmentors."""

import numpy as np
import pytest
import torch
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.structures import SegDataSample

from mmseg_gearnn.models.segmentors.paired_frames import paired_batch

PREPROCESSOR = SegDataPreProcessor(
    mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], size_divisor=2, bgr_to_rgb=True
)


def _sample(img):
    sample = SegDataSample()
    sample.set_metainfo(dict(clean_img=img))
    return sample


def test_copies_are_prepared_as_the_inputs():
    img = np.random.default_rng(0).integers(0, 255, (8, 6, 3), np.uint8)
    packed = torch.from_numpy(img.transpose(2, 0, 1).copy())
    inputs = PREPROCESSOR(
        dict(inputs=[packed], data_samples=[SegDataSample()]), True
    )['inputs']
    batch = paired_batch(
        PREPROCESSOR, [_sample(img)], 'clean_img', inputs, 'clean copy', 'X'
    )
    torch.testing.assert_close(batch, inputs)


@pytest.mark.faults
def test_a_missing_or_resized_copy_names_the_step():
    inputs = torch.zeros(1, 3, 8, 6)
    step = 'KeepCleanCopy right before RandomDistortion'
    with pytest.raises(KeyError, match=f'put {step} in the training'):
        paired_batch(
            PREPROCESSOR, [SegDataSample()], 'clean_img', inputs, 'c', step
        )
    small = np.zeros((4, 6, 3), np.uint8)
    with pytest.raises(ValueError, match='KeepCleanCopy must come after'):
        paired_batch(
            PREPROCESSOR, [_sample(small)], 'clean_img', inputs, 'c', step
        )
