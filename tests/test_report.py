
import numpy as np
import pytest

import data
import metrics

import report


def test_trivial_baseline_scores_as_half_in_the_unknown_region():
    trimap = np.array([[0, 128, 128], [255, 128, 255]], np.uint8)
    alpha = np.array([[0, 0, 255], [255, 51, 255]], np.uint8)
    scores = metrics.compute_all(report.trivial_baseline(trimap), alpha, trimap)
    # the unknown pixels are 0, 255 and 51, each against 128: worked out by hand
    assert scores['sad'] == pytest.approx((128 + 127 + 77) / 255 / 1000)
    assert scores['mse'] == pytest.approx((128 ** 2 + 127 ** 2 + 77 ** 2) / 255 ** 2 / 3)


def test_perfect_predictions_beat_the_baseline_and_the_picture_is_drawn(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(3):
        alpha = np.zeros((40, 60), np.uint8)
        alpha[10:30, 15:45] = 255
        alpha[10:30, 12:15] = rng.integers(1, 255, (20, 3))
        data.write_png(str(tmp_path / 'alpha' / f'im{i}.png'), alpha)
        data.write_png(str(tmp_path / 'pred' / f'im{i}.png'), alpha)
        data.write_png(str(tmp_path / 'trimap' / f'im{i}.png'), data.band_trimap(alpha, 3))
        data.write_png(str(tmp_path / 'image' / f'im{i}.png'), rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    ours, baseline = report.score(['im0.png', 'im1.png', 'im2.png'], str(tmp_path / 'pred'),
                                  str(tmp_path / 'trimap'), str(tmp_path / 'alpha'))
    assert ours['sad'] == 0 and baseline['sad'] > 0.05
    picture = tmp_path / 'sheet.png'
    assert report.main(['--pred_dir', str(tmp_path / 'pred'), '--img_dir', str(tmp_path / 'image'),
                        '--trimap_dir', str(tmp_path / 'trimap'), '--alpha_dir', str(tmp_path / 'alpha'),
                        '--picture', str(picture), '--count', '2', ]) == 0
    assert 'trivial baseline' in capsys.readouterr().out
    sheet = data.read_image(str(picture))
    assert sheet.shape[0] == 2 * (220 + 4) and sheet.shape[1] == 5 * 330  # 2 rows of 5 panels


def test_missing_prediction_is_a_one_line_error(tmp_path, capsys):
    data.write_png(str(tmp_path / 'image' / 'a.png'), np.zeros((40, 40, 3), np.uint8))
    data.write_png(str(tmp_path / 'trimap' / 'a.png'), np.full((40, 40), 128, np.uint8))
    data.write_png(str(tmp_path / 'alpha' / 'a.png'), np.zeros((40, 40), np.uint8))
    assert report.main(['--pred_dir', str(tmp_path / 'pred'), '--img_dir', str(tmp_path / 'image'),
                        '--trimap_dir', str(tmp_path / 'trimap'), '--alpha_dir', str(tmp_path / 'alpha')]) == 1
    assert 'a.png' in capsys.readouterr().err
