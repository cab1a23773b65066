"""tools/mask2trimap.py: a folder of masks to trimaps, bad masks named one per line."""
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools'))

import data  # noqa: E402
import mask2trimap  # noqa: E402


def test_masks_to_trimaps_with_a_relative_band(tmp_path, capsys):
    yy, xx = np.mgrid[:60, :90]
    mask = np.where(np.hypot(yy - 30, xx - 45) < 20, 255, 0).astype(np.uint8)
    (tmp_path / 'masks').mkdir()
    cv2.imwrite(str(tmp_path / 'masks' / 'a.jpg'), mask)  # JPEG noise: thresholded at 128 all the same
    cv2.imwrite(str(tmp_path / 'masks' / 'empty.png'), np.zeros_like(mask))
    rc = mask2trimap.main(['--mask_dir', str(tmp_path / 'masks'), '--out_dir', str(tmp_path / 'trimaps'),
                           '--band', '10%'])
    err = capsys.readouterr().err
    assert rc == 1 and 'empty.png: the mask is empty' in err
    assert os.listdir(tmp_path / 'trimaps') == ['a.png']
    trimap = data.read_gray(str(tmp_path / 'trimaps' / 'a.png'))
    assert np.array_equal(trimap, data.mask_trimap(mask, 9))  # 10% of the longer side, 90 px
    rc = mask2trimap.main(['--mask', str(tmp_path / 'masks' / 'a.jpg'), '-o', str(tmp_path / 'one.png')])
    assert rc == 0 and np.array_equal(data.read_gray(str(tmp_path / 'one.png')),
                                      data.mask_trimap(mask, data.band_pixels(data.MASK_BAND, mask.shape)))
