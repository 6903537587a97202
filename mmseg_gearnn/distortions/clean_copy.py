"""Keep the undistorted image beside the one a later transform distorts."""

from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

# The results (and metainfo) key of the undistorted copy.
CLEAN_IMG = 'clean_img'


@TRANSFORMS.register_module()
class KeepCleanCopy(BaseTransform):
    """Copy ``img`` to ``clean_img`` before a distortion transform changes
    it, so that training can compare the distorted frame with the clean one
    (:class:`~mmseg_gearnn.models.DistilledGearNNSegmentor`).

    Place it after every geometric and photometric transform and right
    before the distortion (``RandomDistortion``), so that the two images
    differ only by the distortion, and list ``'clean_img'`` in
    ``PackSegInputs``' ``meta_keys``: the copy then travels, as the uint8
    array, in ``data_sample.metainfo``.

    Required Keys:

    - img

    Added Keys:

    - clean_img (np.ndarray): a copy of ``img``.
    """

    def transform(self, results: dict) -> dict:
        results[CLEAN_IMG] = results['img'].copy()
        return results
