import csv
import math
import os
from collections import deque

import cv2
import numpy as np
import pytest

import metrics
from metrics import compute_all, connectivity_error, fix_known, gradient_error, mse, sad


def u8(rows):
    return np.array(rows, dtype=np.uint8)


def columns_case():
    """10 x 10: 3 background columns, 4 unknown columns (alpha 100), 3 foreground columns: 40 unknown px."""
    trimap = np.zeros((10, 10), np.uint8)
    trimap[:, 3:7] = 128
    trimap[:, 7:] = 255
    alpha = np.where(trimap == 128, 100, trimap).astype(np.uint8)
    return alpha, trimap


def test_conn_thresholds_are_float32_tenths():
    # i/10 in float32 against float32(k)/255: 153/255 sits exactly on 0.6, 51 on 0.2, 204 on 0.8
    assert metrics.CONN_LEVELS == (0, 26, 51, 77, 102, 128, 153, 179, 204, 230, 255)


def test_perfect_prediction_scores_zero():
    rng = np.random.default_rng(0)
    alpha = rng.integers(0, 256, (30, 40)).astype(np.uint8)
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), (30, 40))
    alpha[trimap != 128] = trimap[trimap != 128]  # a ground truth that agrees with its trimap
    assert compute_all(alpha, alpha, trimap) == dict(sad=0.0, mse=0.0, grad=0.0, conn=0.0)


def test_constant_error_over_known_number_of_unknown_pixels():
    alpha, trimap = columns_case()
    pred = alpha.copy()
    pred[trimap == 128] = 151  # error 51/255 = 0.2 on each of the 40 unknown pixels
    assert sad(pred, alpha, trimap) == pytest.approx(40 * 0.2 / 1000, rel=1e-12)
    assert mse(pred, alpha, trimap) == pytest.approx(0.04, rel=1e-12)


def test_pixels_outside_unknown_region_never_count():
    alpha, trimap = columns_case()
    alpha[:, :3] = 30  # a ground truth that is not 0 where the trimap says background
    alpha[:, 7:] = 200
    pred = alpha.copy()
    pred[trimap == 128] = 151
    assert sad(pred, alpha, trimap) == pytest.approx(40 * 0.2 / 1000, rel=1e-12)
    assert mse(pred, alpha, trimap) == pytest.approx(0.04, rel=1e-12)


def test_known_regions_of_prediction_are_fixed_from_trimap():
    rng = np.random.default_rng(1)
    alpha = cv2.GaussianBlur(rng.integers(0, 256, (40, 50)).astype(np.uint8), (9, 9), 3)
    alpha = np.clip((alpha.astype(int) - 128) * 8 + 128, 0, 255).astype(np.uint8)
    trimap = np.where(alpha == 255, 255, np.where(alpha == 0, 0, 128)).astype(np.uint8)
    pred = np.clip(alpha.astype(int) + rng.integers(-30, 30, alpha.shape), 0, 255).astype(np.uint8)
    fixed = fix_known(pred, trimap)
    assert np.all(fixed[trimap == 255] == 255) and np.all(fixed[trimap == 0] == 0)
    assert np.array_equal(fixed[trimap == 128], pred[trimap == 128])
    assert np.any(pred[trimap != 128] != fixed[trimap != 128])  # the raw output was wrong in known areas
    assert compute_all(pred, alpha, trimap) == compute_all(fixed, alpha, trimap)
    assert compute_all(fixed, alpha, trimap)['grad'] > 0


def test_constant_maps_have_zero_gradient():
    trimap = np.full((12, 12), 128, np.uint8)
    alpha = np.full((12, 12), 100, np.uint8)
    pred = np.full((12, 12), 200, np.uint8)
    assert gradient_error(pred, alpha, trimap) == 0.0
    assert sad(pred, alpha, trimap) > 0


def test_gradient_of_a_ramp_against_a_constant():
    # alpha is a horizontal ramp 0, 15, ..., 255 over 18 columns; min-max normalised it is x / 17. At least
    # 4 px (the kernel's half-width) from the left and right borders, the x filter G(i) dG(j) (unit norm)
    # gives sum_i G(i) * sum_j j dG(j) / norm / 17, the y filter 0; the constant prediction has no gradient.
    w = 18
    alpha = np.tile((np.arange(w) * 15).astype(np.uint8), (6, 1))
    trimap = np.full(alpha.shape, 255, np.uint8)
    trimap[:, 4:w - 4] = 128  # 6 rows x 10 columns
    pred = np.full(alpha.shape, 255, np.uint8)
    s, h = 1.4, 4
    x = np.arange(-h, h + 1, dtype=np.float64)
    g = np.exp(-x ** 2 / (2 * s * s)) / (s * math.sqrt(2 * math.pi))
    dg = -x * g / s ** 2
    norm = math.sqrt(((g[:, None] * dg[None, :]) ** 2).sum())
    slope = abs(g.sum() * (x * dg).sum()) / norm / (w - 1)
    expected = 60 * float(np.float32(slope)) ** 2 / 1000
    assert gradient_error(pred, alpha, trimap) == pytest.approx(expected, rel=1e-9)
    # next to the border the replicated edge flattens the ramp: there the gradient is smaller
    trimap[:, :] = 128
    assert gradient_error(pred, alpha, trimap) < 6 * w * float(np.float32(slope)) ** 2 / 1000


def test_gradient_compares_min_max_normalised_maps():
    # a ramp 0..85 and a ramp 0..255 of the same shape both normalise to x / 17: no gradient error
    trimap = np.full((6, 18), 128, np.uint8)
    alpha = np.tile((np.arange(18) * 15).astype(np.uint8), (6, 1))
    pred = np.tile((np.arange(18) * 5).astype(np.uint8), (6, 1))
    assert sad(pred, alpha, trimap) > 0
    assert gradient_error(pred, alpha, trimap) < 1e-12
    assert gradient_error(pred // 5 * 3, alpha, trimap) < 1e-12  # 0..51


def test_connectivity_single_hole():
    # alpha 1 everywhere, prediction 0 at the centre: the ring is the largest component at every threshold
    # (l = 1 there), the centre drops out at t = 0.1 (l = 0): phi_p = 1, phi_g = 1 - 1 = 0.
    trimap = np.full((3, 3), 128, np.uint8)
    alpha = np.full((3, 3), 255, np.uint8)
    pred = alpha.copy()
    pred[1, 1] = 0
    assert connectivity_error(pred, alpha, trimap) == pytest.approx(1 / 1000, rel=1e-12)


def test_connectivity_is_4_connected():
    # Diagonal pixels are separate 4-components. The corner (0, 0) wins the tie; the centre (p = 0.75) is then
    # never in omega and gets l = 0, so |phi_p - phi_g| = g - p = 64/255. With 8-connectivity it would stay
    # in omega up to t = 0.7, get l = 0.7 and contribute 0.3. The other 7 pixels (p 0, g 1) contribute 1 each.
    trimap = np.full((3, 3), 128, np.uint8)
    alpha = np.full((3, 3), 255, np.uint8)
    pred = u8([[255, 0, 0], [0, 191, 0], [0, 0, 0]])
    assert connectivity_error(pred, alpha, trimap) == pytest.approx((7 + 64 / 255) / 1000, rel=1e-12)


def test_connectivity_ties_go_to_first_component_in_column_major_order():
    # Two single-pixel components: MATLAB's bwconncomp numbers (1, 0) first (column 0), max() keeps it.
    # (1, 0) is then in omega up to t = 0.7 (191 >= 179) and gets l = 0.7: phi_p = 1, phi_g = 0.7 -> 0.3.
    # Row-major order would pick (0, 1) and give (1, 0) l = 0, i.e. 64/255 instead of 0.3.
    trimap = np.full((2, 2), 128, np.uint8)
    alpha = np.full((2, 2), 255, np.uint8)
    pred = u8([[0, 255], [191, 0]])
    assert connectivity_error(pred, alpha, trimap) == pytest.approx((2 + 0.3) / 1000, rel=1e-12)


def test_connectivity_threshold_0_6_is_float32():
    # p = 153/255 = 0.6 passes t = 0.6 (float32), drops out at 0.7, so l = 0.6: phi_p = 1, phi_g = 0.6.
    # With np.arange's 0.6000000000000001 in float64 it would drop out at 0.6, l = 0.5, giving 0.5.
    trimap = np.full((1, 1), 128, np.uint8)
    assert connectivity_error(u8([[153]]), u8([[255]]), trimap) == pytest.approx(0.4 / 1000, rel=1e-9)


def test_connectivity_with_empty_threshold_masks():
    # No pixel reaches t = 0.8 in both maps: omega is empty there. Pixel 1 (p 100, g 200) leaves omega at
    # t = 0.4 (100 < 102), so l = 0.3: phi_p = 1 (d = 0.092), phi_g = 1 - (200/255 - 0.3).
    trimap = np.full((1, 2), 128, np.uint8)
    conn = connectivity_error(u8([[200, 100]]), u8([[200, 200]]), trimap)
    assert conn == pytest.approx((200 / 255 - 0.3) / 1000, rel=1e-12)


def test_no_unknown_pixel_scores_zero():
    alpha, trimap = columns_case()
    trimap[trimap == 128] = 255
    assert compute_all(255 - alpha, alpha, trimap) == dict(sad=0.0, mse=0.0, grad=0.0, conn=0.0)


def test_bad_arrays_raise():
    a = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match='sizes differ'):
        sad(a, np.zeros((4, 5), np.uint8), a)
    with pytest.raises(ValueError, match='pred'):
        compute_all(a.astype(np.float32), a, a)


# ------------------------------------------------------- a literal transcription of the MATLAB evaluation

def matlab_gradient_loss(pred, target, trimap):
    def mat2gray(a):
        a = a.astype(np.float64)
        lo, hi = a.min(), a.max()
        return np.zeros_like(a) if lo == hi else np.clip(a / (hi - lo) - lo / (hi - lo), 0, 1)

    def gaussgradient(im, sigma):
        halfsize = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
        size = 2 * halfsize + 1
        gauss = lambda x: math.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
        dgauss = lambda x: -x * gauss(x) / sigma ** 2
        hx = np.zeros((size, size))
        for i in range(1, size + 1):
            for j in range(1, size + 1):
                hx[i - 1, j - 1] = gauss(i - halfsize - 1) * dgauss(j - halfsize - 1)
        hx = hx / math.sqrt((np.abs(hx) * np.abs(hx)).sum())
        hy = hx.T

        def imfilter_conv_replicate(a, k):
            r = k.shape[0] // 2
            padded = np.pad(a, r, mode='edge')
            out = np.zeros_like(a)
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):  # convolution: out(y, x) = sum k(di, dj) a(y - di, x - dj)
                    out += k[di + r, dj + r] * padded[r - di:r - di + a.shape[0], r - dj:r - dj + a.shape[1]]
            return out

        return imfilter_conv_replicate(im, hx), imfilter_conv_replicate(im, hy)

    pred_x, pred_y = gaussgradient(mat2gray(pred), 1.4)
    target_x, target_y = gaussgradient(mat2gray(target), 1.4)
    pred_amp = np.sqrt(pred_x ** 2 + pred_y ** 2)
    target_amp = np.sqrt(target_x ** 2 + target_y ** 2)
    error_map = (pred_amp.astype(np.float32) - target_amp.astype(np.float32)) ** 2
    return float((error_map.astype(np.float64) * (trimap == 128)).sum()) / 1000


def bwconncomp4(mask):
    """PixelIdxList of the 4-connected components, numbered in MATLAB's column-major scan order."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    comps = []
    for x in range(w):
        for y in range(h):
            if mask[y, x] and not seen[y, x]:
                comp, queue = [], deque([(y, x)])
                seen[y, x] = True
                while queue:
                    cy, cx = queue.popleft()
                    comp.append((cy, cx))
                    for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
                comps.append(comp)
    return comps


def matlab_connectivity_error(pred, target, trimap, step=0.1):
    pred = pred.astype(np.float32) / np.float32(255)  # single(pred)/255
    target = target.astype(np.float32) / np.float32(255)
    thresh_steps = [k * step if k <= 5 else 1 - (10 - k) * step for k in range(11)]  # MATLAB's 0:0.1:1
    l_map = np.full(pred.shape, -1.0)
    for ii in range(1, len(thresh_steps)):
        t = np.float32(thresh_steps[ii])  # single >= double compares in single
        comps = bwconncomp4((pred >= t) & (target >= t))
        omega = np.zeros(pred.shape)
        if comps:
            sizes = [len(c) for c in comps]
            for y, x in comps[sizes.index(max(sizes))]:  # max() keeps the first
                omega[y, x] = 1
        flag = (l_map == -1) & (omega == 0)
        l_map[flag] = thresh_steps[ii - 1]
    l_map[l_map == -1] = 1
    pred_d = pred - l_map.astype(np.float32)  # single - double is single
    target_d = target - l_map.astype(np.float32)
    pred_phi = 1 - pred_d * (pred_d >= np.float32(0.15))
    target_phi = 1 - target_d * (target_d >= np.float32(0.15))
    return float((np.abs(pred_phi - target_phi).astype(np.float64) * (trimap == 128)).sum()) / 1000


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_grad_and_conn_match_literal_matlab_transcription(seed):
    rng = np.random.default_rng(seed)
    h, w = 40, 50
    blob = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 4)
    blob = (blob - blob.min()) / (blob.max() - blob.min())
    alpha = np.clip((blob - 0.5) * 6 * 255 + 128, 0, 255).astype(np.uint8)
    unknown = cv2.dilate(((alpha > 0) & (alpha < 255)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    trimap = np.where(unknown, 128, np.where(alpha > 127, 255, 0)).astype(np.uint8)
    noise = rng.integers(-60, 60, (h, w)) * (rng.random((h, w)) < 0.5)
    pred = np.clip(alpha.astype(int) + noise, 0, 255).astype(np.uint8)
    pred[rng.random((h, w)) < 0.05] = 153  # values sitting exactly on a threshold
    raw = pred.copy()
    raw[rng.random((h, w)) < 0.1] = 77  # wrong in known areas: fixed before scoring
    ref_pred = raw.copy()
    ref_pred[trimap == 255] = 255
    ref_pred[trimap == 0] = 0
    grad_ref = matlab_gradient_loss(ref_pred, alpha, trimap)
    conn_ref = matlab_connectivity_error(ref_pred, alpha, trimap)
    assert grad_ref > 0 and conn_ref > 0
    assert gradient_error(raw, alpha, trimap) == pytest.approx(grad_ref, rel=1e-6)
    assert connectivity_error(raw, alpha, trimap) == pytest.approx(conn_ref, rel=1e-6)


# --------------------------------------------------------------------------------------------- the CLI

def write_set(root, names, shape=(24, 32), seed=0):
    rng = np.random.default_rng(seed)
    dirs = {k: os.path.join(root, k) for k in ('pred', 'alpha', 'trimap')}
    for d in dirs.values():
        os.makedirs(d)
    arrays = {}
    for name in names:
        alpha = rng.integers(0, 256, shape).astype(np.uint8)
        trimap = rng.choice(np.array([0, 128, 255], np.uint8), shape)
        pred = np.clip(alpha.astype(int) + rng.integers(-20, 20, shape), 0, 255).astype(np.uint8)
        for k, a in (('pred', pred), ('alpha', alpha), ('trimap', trimap)):
            cv2.imwrite(os.path.join(dirs[k], name + '.png'), a)
        arrays[name] = (pred, alpha, trimap)
    return dirs, arrays


@pytest.mark.parametrize('workers', [1, 2])
def test_cli_scores_good_files_and_reports_bad_ones(tmp_path, capsys, workers):
    dirs, arrays = write_set(str(tmp_path), ['a', 'b', 'c', 'deep', 'small', 'rgb'])
    deep = arrays['deep'][0]  # 16-bit, as every reader of the project takes it: scaled to 8 bits exactly
    cv2.imwrite(os.path.join(dirs['pred'], 'deep.png'), deep.astype(np.uint16) * 257)
    cv2.imwrite(os.path.join(dirs['pred'], 'small.png'), np.zeros((20, 32), np.uint8))  # wrong size
    gray = arrays['rgb'][0]
    cv2.imwrite(os.path.join(dirs['pred'], 'rgb.png'), np.dstack([gray, gray, gray]))  # gray as RGB: ok
    os.remove(os.path.join(dirs['trimap'], 'c.png'))
    csv_path = os.path.join(str(tmp_path), 'out', 'scores.csv')
    rc = metrics.main(['--pred', dirs['pred'], '--alpha', dirs['alpha'], '--trimap', dirs['trimap'],
                       '--csv', csv_path, '--workers', str(workers)])
    out, err = capsys.readouterr()
    assert rc == 1
    err_lines = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(err_lines) == 2
    assert any('small.png' in line and 'sizes differ' in line for line in err_lines)
    assert any('c.png' in line and 'trimap' in line for line in err_lines)
    with open(csv_path, newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['name'] for r in rows] == ['a', 'b', 'deep', 'rgb']
    for r in rows:
        expected = compute_all(*arrays[r['name']])
        for m in metrics.METRICS:
            assert float(r[m]) == expected[m]
    mean_sad = np.mean([compute_all(*arrays[n])['sad'] for n in ('a', 'b', 'deep', 'rgb')])
    assert f"mean over 4 images: SAD {mean_sad:.2f}" in out


def test_cli_all_good_exits_zero(tmp_path, capsys):
    dirs, _ = write_set(str(tmp_path), ['x', 'y'])
    assert metrics.main(['--pred', dirs['pred'], '--alpha', dirs['alpha'], '--trimap', dirs['trimap'],
                         '--workers', '1']) == 0
    assert 'mean over 2 images' in capsys.readouterr().out


def test_help_says_known_regions_are_fixed(capsys):
    with pytest.raises(SystemExit):
        metrics.main(['--help'])
    assert 'known regions' in capsys.readouterr().out


def test_format_table():
    table = metrics.format_table({'DIM': dict(sad=50.4, mse=0.014, grad=31.0, conn=50.8),
                                  'trivial baseline': dict(sad=168.1, mse=0.091, grad=126.9, conn=167.9)})
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].split()[1:] == ['SAD', 'MSE', 'GRAD', 'CONN']
    assert lines[1].split() == ['DIM', '50.40', '0.0140', '31.00', '50.80']
    assert lines[2].startswith('trivial baseline') and lines[2].split()[-4:] == ['168.10', '0.0910', '126.90',
                                                                                '167.90']
