
import numpy as np
import pytest
import torch

import data
import metrics
import net

import report


def test_trivial_baseline_scores_as_half_in_the_unknown_region():
    trimap = np.array([[0, 128, 128], [255, 128, 255]], np.uint8)
    alpha = np.array([[0, 0, 255], [255, 51, 255]], np.uint8)
    scores = metrics.compute_all(report.trivial_baseline(trimap), alpha, trimap)
    # the unknown pixels are 0, 255 and 51, each against 128: worked out by hand
    assert scores['sad'] == pytest.approx((128 + 127 + 77) / 255 / 1000)
    assert scores['mse'] == pytest.approx((128 ** 2 + 127 ** 2 + 77 ** 2) / 255 ** 2 / 3)


def write_test_set(folder, n=3, seed=0):
    """n composites of a soft-edged rectangle on noise, with alphas and band trimaps; returns their file names."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        alpha = np.zeros((40, 60), np.uint8)
        alpha[10:30, 15:45] = 255
        alpha[10:30, 12:15] = rng.integers(1, 255, (20, 3))
        fg = np.full((40, 60, 3), (200, 60, 30), np.uint8)
        bg = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
        data.write_png(str(folder / 'alpha' / f'im{i}.png'), alpha)
        data.write_png(str(folder / 'trimap' / f'im{i}.png'), data.band_trimap(alpha, 3))
        data.write_png(str(folder / 'image' / f'im{i}.png'), data.compose(fg, bg, alpha).astype(np.uint8))
    return [f'im{i}.png' for i in range(n)]


def test_perfect_predictions_beat_the_baseline_and_the_picture_is_drawn(tmp_path, capsys):
    for name in write_test_set(tmp_path):
        data.write_png(str(tmp_path / 'pred' / name), data.read_gray(str(tmp_path / 'alpha' / name)))
    samples = report.folder_test_set(str(tmp_path / 'image'), str(tmp_path / 'trimap'), str(tmp_path / 'alpha'))
    result = report.compare(samples, report.methods_to_compare(pred_dir=str(tmp_path / 'pred')))
    ours, baseline = result['rows']
    assert result['images'] == 3 and ours['method'] == 'DIM (this run)' and baseline['method'] == report.TRIVIAL
    assert ours['SAD'] == 0 and baseline['SAD'] > 0.05
    picture = tmp_path / 'sheet.png'
    assert report.main(['--pred_dir', str(tmp_path / 'pred'), '--img_dir', str(tmp_path / 'image'),
                        '--trimap_dir', str(tmp_path / 'trimap'), '--alpha_dir', str(tmp_path / 'alpha'),
                        '--picture', str(picture), '--count', '2', ]) == 0
    assert 'trivial baseline' in capsys.readouterr().out
    sheet = data.read_image(str(picture))
    assert sheet.shape[0] == 2 * (220 + 4) and sheet.shape[1] == 5 * 330  # 2 rows of 5 panels


def test_a_checkpoint_in_two_precisions_and_closed_form_beside_the_baseline(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'tiny.pth')
    net.save_checkpoint({'format': net.CHECKPOINT_FORMAT, 'model': net.DIM().state_dict(), 'stage': 1, 'step': 0},
                        ckpt)
    write_test_set(tmp_path, n=2)
    folders = [str(tmp_path / sub) for sub in ('image', 'trimap', 'alpha')]
    cpu = torch.device('cpu')
    methods = report.methods_to_compare(ckpt=ckpt, device=cpu, dtypes=report.precisions(cpu, ['fp32', 'bf16']))
    rows = {r['method']: r for r in report.compare(report.folder_test_set(*folders), methods)['rows']}
    assert list(rows) == ['DIM stage 1 (tiny.pth) fp32', 'DIM stage 1 (tiny.pth) bf16', report.TRIVIAL]
    fp32, bf16 = rows['DIM stage 1 (tiny.pth) fp32'], rows['DIM stage 1 (tiny.pth) bf16']
    assert fp32['s/image'] > 0 and bf16['SAD'] == pytest.approx(fp32['SAD'], rel=0.05)  # the same model in bf16

    pytest.importorskip('pymatting')
    assert report.main(['--closed_form', '--img_dir', folders[0], '--trimap_dir', folders[1], '--alpha_dir',
                        folders[2], '--max_images', '1']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '1 images' and lines[1].split() == ['method', 'SAD', 'MSE', 'GRAD', 'CONN', 's/image']
    closed_form_sad = float(lines[2].split()[2])
    trivial_sad = float(lines[3].split()[5])
    assert lines[2].startswith(report.CLOSED_FORM) and closed_form_sad < trivial_sad / 2  # far better than 0.5


def test_precisions_compare_fp32_with_the_devices_reduced_one(monkeypatch):
    cpu = torch.device('cpu')
    bf16 = {'fp32': torch.float32, 'bf16': torch.bfloat16}
    assert report.precisions(cpu) == bf16  # bf16 is measured even where auto would not pick it
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: (7, 5))  # a T4
    assert report.precisions(torch.device('cuda')) == {'fp32': torch.float32, 'fp16': torch.float16}
    monkeypatch.setattr(net, 'cpu_has_bf16', lambda: False)
    assert report.precisions(cpu, ['fp32', 'auto']) == {'fp32': torch.float32}  # auto is fp32 then: listed once


def test_nothing_to_score_is_a_one_line_error(tmp_path, capsys):
    write_test_set(tmp_path, n=1)
    assert report.main(['--img_dir', str(tmp_path / 'image'), '--trimap_dir', str(tmp_path / 'trimap'),
                        '--alpha_dir', str(tmp_path / 'alpha')]) == 1
    assert 'nothing to score' in capsys.readouterr().err


def test_missing_prediction_is_a_one_line_error(tmp_path, capsys):
    data.write_png(str(tmp_path / 'image' / 'a.png'), np.zeros((40, 40, 3), np.uint8))
    data.write_png(str(tmp_path / 'trimap' / 'a.png'), np.full((40, 40), 128, np.uint8))
    data.write_png(str(tmp_path / 'alpha' / 'a.png'), np.zeros((40, 40), np.uint8))
    assert report.main(['--pred_dir', str(tmp_path / 'pred'), '--img_dir', str(tmp_path / 'image'),
                        '--trimap_dir', str(tmp_path / 'trimap'), '--alpha_dir', str(tmp_path / 'alpha')]) == 1
    assert 'a.png' in capsys.readouterr().err
