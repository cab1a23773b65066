"""tools/bench_cutout.py runs end to end on tiny inputs (a smoke test: its numbers are not checked here)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools'))

import data  # noqa: E402

pytest.importorskip('pymatting')
import bench_cutout  # noqa: E402


def test_coarse_mask_moves_the_boundary_but_keeps_the_shape():
    yy, xx = np.mgrid[:64, :96]
    alpha = np.clip((20 - np.hypot(yy - 32, xx - 48)) * 64 + 128, 0, 255).astype(np.uint8)
    exact = bench_cutout.mask_from_alpha(alpha, 1)
    assert np.array_equal(exact, np.where(alpha >= 128, 255, 0))
    coarse = bench_cutout.mask_from_alpha(alpha, 8)
    assert not np.array_equal(coarse, exact) and np.mean(coarse != exact) < 0.05


def test_bench_cutout_runs_on_tiny_inputs(tmp_path, capsys):
    yy, xx = np.mgrid[:40, :48]
    alpha = np.clip((12 - np.hypot(yy - 20, xx - 24)) * 40 + 128, 0, 255).astype(np.uint8)
    image = np.dstack([alpha, 255 - alpha, np.full_like(alpha, 90)])
    for sub, array in (('image', image), ('alpha', alpha), ('trimap', data.band_trimap(alpha, 3))):
        data.write_png(str(tmp_path / 'real' / sub / 'a.png'), array)
    assert bench_cutout.main(['--real_dir', str(tmp_path / 'real'), '--bands', '2', '4', '--fg_count', '1',
                              '--fg_size', '48']) == 0
    out = capsys.readouterr().out
    assert '| 4 |' in out and '| estimate_foreground_ml |' in out
