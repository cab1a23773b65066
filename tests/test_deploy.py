import os
import re

import cv2
import numpy as np
import pytest
import torch

import data
import deploy
import net


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    model = net.DIM().eval()
    torch.nn.init.xavier_uniform_(model.refiner.refine_pred.weight)  # a trained refiner changes the alpha
    return model


class Counting(torch.nn.Module):
    """Wraps a DIM and records the input shape of every forward pass."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.shapes = []

    def forward(self, img, trimap, refine=True):
        self.shapes.append(tuple(img.shape))
        return self.model(img, trimap, refine=refine)


def make_sample(h, w, seed=0):
    """A smooth random image and a trimap: background, an unknown ring, a foreground core."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h / 2) / h, (xx - w / 2) / w)
    trimap = np.where(r < 0.15, 255, 0).astype(np.uint8)
    trimap[(r >= 0.15) & (r < 0.3)] = 128
    return image, trimap


@pytest.mark.parametrize('shape', [(33, 47), (1, 1), (31, 64), (65, 3), (64, 96)])
def test_pad_to_multiple_and_crop_back_restore_odd_sizes(shape):
    rng = np.random.default_rng(1)
    for x in (rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, shape + (3,), dtype=np.uint8)):
        padded = deploy.pad_to_multiple(x, 32)
        h, w = shape
        assert padded.shape[0] % 32 == 0 and padded.shape[1] % 32 == 0
        assert padded.shape[0] - h < 32 and padded.shape[1] - w < 32 and padded.shape[2:] == x.shape[2:]
        assert np.array_equal(padded[:h, :w], x)
        if h >= 2 and padded.shape[0] > h:  # reflection, not zeros: row h mirrors row h - 2
            assert np.array_equal(padded[h, :w], x[h - 2])


@pytest.mark.parametrize('method', ['whole', 'crop', 'resize'])
def test_known_regions_equal_the_trimap_at_odd_sizes(model, method):
    image, trimap = make_sample(33, 47)
    alpha = deploy.predict(model, image, trimap, stage=1, method=method, tile=32, size=(64, 64))
    assert alpha.shape == (33, 47) and alpha.dtype == np.float32
    assert np.all(alpha[trimap == 255] == 1) and np.all(alpha[trimap == 0] == 0)
    unknown = alpha[trimap == 128]
    assert np.all((unknown >= 0) & (unknown <= 1))
    assert np.mean((unknown > 0) & (unknown < 1)) > 0.5  # the network's output, not the trimap


def test_clean_trimap_thresholds():
    values = np.array([[0, 40, 48, 49, 88, 128, 168, 206, 207, 215, 255]], np.uint8)
    expected = np.array([[0, 0, 0, 128, 128, 128, 128, 128, 255, 255, 255]], np.uint8)
    assert np.array_equal(deploy.clean_trimap(values), expected)
    trimap = np.repeat(np.array([[0, 128, 255]], np.uint8), 1000, axis=0)
    noise = np.random.default_rng(0).integers(-40, 41, trimap.shape)
    noisy = np.clip(trimap + noise, 0, 255).astype(np.uint8)
    assert np.array_equal(deploy.clean_trimap(noisy), trimap)  # noise of +-40 keeps every class


def test_noisy_jpeg_trimap_maps_to_the_documented_classes():
    trimap = np.zeros((96, 128), np.uint8)  # edges off the 8 x 8 JPEG grid, so JPEG changes values
    trimap[:, 37:91] = 128
    trimap[21:75, 53:75] = 255
    ok, encoded = cv2.imencode('.jpg', trimap, [cv2.IMWRITE_JPEG_QUALITY, 75])
    noisy = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    assert not np.array_equal(noisy, trimap)  # the test is only worth something if JPEG changed values
    cleaned = deploy.clean_trimap(noisy)
    assert set(np.unique(cleaned)) <= {0, 128, 255}
    kernel = np.ones((9, 9), np.uint8)  # away from the edges (4 px either side)
    for value in (0, 128, 255):
        inside = cv2.erode((trimap == value).astype(np.uint8), kernel).astype(bool)
        assert inside.any() and np.all(cleaned[inside] == value)
    # An anti-aliased edge (a blend of background and foreground) becomes unknown, not known.
    edge = cv2.resize(np.array([[0, 255]], np.uint8), (16, 1), interpolation=cv2.INTER_LINEAR)
    blended = deploy.clean_trimap(edge)[0]
    assert np.all(blended[(edge[0] > 48) & (edge[0] < 207)] == 128)


def test_crop_skips_tiles_without_unknown_pixels(model):
    image, _ = make_sample(64, 96)
    trimap = np.zeros((64, 96), np.uint8)
    trimap[2:8, 2:8] = 128  # only in the top-left tile (tiles of 32, stride 24)
    trimap[60:63, 90:95] = 128  # and in the bottom-right one
    trimap[40:50, 40:50] = 255  # known foreground: no tile needed for it
    counting = Counting(model)
    alpha = deploy.predict(counting, image, trimap, stage=1, method='crop', tile=32)
    assert alpha.shape == (64, 96)
    assert counting.shapes == [(2, 3, 32, 32)]  # 2 of the 3 x 4 = 12 tiles, in one batch
    assert np.all(alpha[trimap == 255] == 1) and np.all(alpha[trimap == 0] == 0)
    assert np.all(alpha[trimap == 128] > 0)


@pytest.mark.parametrize('need', ['0000000000', '1000000000', '0000000001', '1111111111', '0011000110',
                                  '0' * 40 + '1' * 30 + '0' * 50 + '1' + '0' * 20])
def test_cover_places_windows_only_where_needed(need):
    need = np.array([c == '1' for c in need])
    t = 8
    starts = deploy._cover(need, t)
    covered = np.zeros(len(need), bool)
    for s in starts:
        assert 0 <= s <= len(need) - t and need[s:s + t].any()
        covered[s:s + t] = True
    assert np.all(covered[need])
    if not need.any():
        assert starts == []


def test_cover_of_a_dense_run_has_stride_three_quarters_and_ends_flush():
    assert deploy._cover(np.ones(32, bool), 8) == [0, 6, 12, 18, 24]
    assert deploy._cover(np.ones(30, bool), 8) == [0, 6, 12, 18, 22]
    assert deploy._cover(np.ones(8, bool), 8) == [0]


def test_max_size_runs_the_whole_image_at_a_reduced_scale(model):
    image, trimap = make_sample(40, 100)
    counting = Counting(model)
    alpha = deploy.predict(counting, image, trimap, stage=1, max_size=50)
    assert alpha.shape == (40, 100)
    assert counting.shapes == [(1, 3, 32, 64)]  # 20 x 50, padded to multiples of 32
    deploy.predict(counting, image, trimap, stage=1, max_size=100)
    assert counting.shapes[-1] == (1, 3, 64, 128)  # within max_size: native size, padded


def test_checkpoint_stage_picks_the_refined_alpha(model, tmp_path):
    image, trimap = make_sample(33, 47)
    img = torch.from_numpy(data.normalize(deploy.pad_to_multiple(image)))[None]
    tri = torch.from_numpy(deploy.pad_to_multiple(trimap)[None, None].astype(np.float32))
    with torch.no_grad():
        alpha_ed, alpha_refined = model(img, tri)
    direct = {1: alpha_ed[0, 0, :33, :47].numpy(), 3: alpha_refined[0, 0, :33, :47].numpy()}
    unknown = trimap == 128
    assert not np.allclose(direct[1][unknown], direct[3][unknown], atol=1e-3)
    for stage in (1, 3):
        path = tmp_path / f'stage{stage}.pth'
        net.save_checkpoint({'format': 1, 'model': model.state_dict(), 'stage': stage, 'step': 0}, path)
        loaded, loaded_stage = deploy.load_model(path, 'cpu')
        assert loaded_stage == stage
        alpha = deploy.predict(loaded, image, trimap, loaded_stage)
        np.testing.assert_allclose(alpha[unknown], direct[stage][unknown], atol=1e-5)


def test_camel_case_flags_parse_like_snake_case():
    parser = deploy.get_args_parser()
    snake = parser.parse_args(['--img_dir', 'i', '--trimap_dir', 't', '--alpha_dir', 'a', '--resume', 'c',
                               '--save_dir', 's', '--stage', '2', '--size_h', '64', '--size_w', '96',
                               '--crop_or_resize', 'crop', '--max_size', '800'])
    camel = parser.parse_args(['--imgDir=i', '--trimapDir=t', '--alphaDir=a', '--resume=c', '--saveDir=s',
                               '--stage=2', '--size_h=64', '--size_w=96', '--crop_or_resize=crop',
                               '--max_size=800', '--crop_h=320', '--crop_w=320'])
    camel.crop_h = camel.crop_w = None  # accepted for old scripts, unused
    assert vars(snake) == vars(camel)


def write(path, array):
    cv2.imwrite(str(path), array)


def test_cli_reports_each_bad_file_and_writes_the_others(model, tmp_path, capsys):
    img_dir, tri_dir, alpha_dir, out_dir = (tmp_path / n for n in ('image', 'trimap', 'alpha', 'out'))
    for d in (img_dir, tri_dir, alpha_dir):
        d.mkdir()
    ckpt = tmp_path / 'ckpt.pth'
    net.save_checkpoint({'format': 1, 'model': model.state_dict(), 'stage': 1, 'step': 0}, ckpt)
    image, trimap = make_sample(40, 56)
    alpha = np.where(trimap == 128, 100, trimap).astype(np.uint8)
    bgr = image[:, :, ::-1]
    # good files: RGB with a noisy JPEG trimap, 16-bit grayscale, RGBA
    write(img_dir / 'good.png', bgr)
    write(tri_dir / 'good.jpg', trimap)
    write(img_dir / 'gray16.png', (image[:, :, 0].astype(np.uint16) * 257))
    write(tri_dir / 'gray16.png', trimap)
    write(img_dir / 'rgba.png', np.dstack([bgr, np.full((40, 56), 200, np.uint8)]))
    write(tri_dir / 'rgba.png', trimap)
    for name in ('good', 'gray16', 'rgba'):
        write(alpha_dir / f'{name}.png', alpha)
    # bad files: no trimap, a trimap of another size, an unreadable image, a coloured trimap
    write(img_dir / 'missing.png', bgr)
    write(img_dir / 'mismatch.png', bgr)
    write(tri_dir / 'mismatch.png', trimap[:33, :47])
    (img_dir / 'broken.png').write_bytes(b'not a png at all')
    write(tri_dir / 'broken.png', trimap)
    write(img_dir / 'colour.png', bgr)
    write(tri_dir / 'colour.png', np.dstack([trimap, np.zeros_like(trimap), 255 - trimap]))

    out_dir.mkdir()
    write(out_dir / 'missing.png', trimap)  # an older run's matte: must not pass for this run's

    rc = deploy.main(['--imgDir', str(img_dir), '--trimapDir', str(tri_dir), '--alphaDir', str(alpha_dir),
                      '--resume', str(ckpt), '--saveDir', str(out_dir), '--device', 'cpu'])
    out, err = capsys.readouterr()
    assert rc != 0
    assert sorted(os.listdir(out_dir)) == ['good.png', 'gray16.png', 'rgba.png']  # no temporary, no stale files
    for name, what in (('missing.png', 'no trimap'), ('mismatch.png', 'trimap is 47x33 but the image is 56x40'),
                       ('broken.png', 'not a readable image'), ('colour.png', 'expected a grayscale trimap')):
        assert re.search(r'error: \S*[/\\]' + re.escape(name) + ': ' + what, err), (name, err)
    saved = cv2.imread(str(out_dir / 'good.png'), cv2.IMREAD_UNCHANGED)
    assert saved.shape == (40, 56) and saved.dtype == np.uint8
    assert np.all(saved[trimap == 255] == 255) and np.all(saved[trimap == 0] == 0)
    assert 'SAD' in out and '3 images' in out
    assert '%|' not in err  # no progress bar off a terminal


def test_cli_global_errors_are_one_line(tmp_path, capsys):
    (tmp_path / 'image').mkdir()
    (tmp_path / 'trimap').mkdir()
    write(tmp_path / 'image' / 'a.png', np.zeros((8, 8, 3), np.uint8))
    args = ['--img_dir', str(tmp_path / 'image'), '--trimap_dir', str(tmp_path / 'trimap'),
            '--save_dir', str(tmp_path / 'out'), '--device', 'cpu']
    assert deploy.main(args + ['--resume', str(tmp_path / 'nothing.pth')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'nothing.pth' in err and 'Traceback' not in err
    args[1] = str(tmp_path / 'no_such_folder')
    assert deploy.main(args + ['--resume', str(tmp_path / 'nothing.pth')]) == 2
    assert 'no_such_folder' in capsys.readouterr().err


def test_deploy_sh_scores_the_test_split(model, tmp_path):
    import subprocess
    import sys
    for i in range(2):
        image, trimap = make_sample(48, 64, seed=i)
        data.write_png(str(tmp_path / 'comp' / 'test' / 'image' / f'a{i}.png'), image)
        data.write_png(str(tmp_path / 'comp' / 'test' / 'trimap' / f'a{i}.png'), trimap)
        data.write_png(str(tmp_path / 'comp' / 'test' / 'alpha' / f'a{i}.png'),
                       np.where(trimap == 128, 100, trimap).astype(np.uint8))
    ckpt = tmp_path / 'runs' / 'stage1' / 'best.pth'
    net.save_checkpoint({'format': net.CHECKPOINT_FORMAT, 'model': model.state_dict(), 'stage': 1, 'step': 0},
                        str(ckpt))
    env = dict(os.environ, DATA=str(tmp_path / 'comp'), CKPT=str(ckpt), OUT=str(tmp_path / 'out'),
               PYTHON=sys.executable)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(['bash', os.path.join(root, 'deploy.sh'), '--device', 'cpu'], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / 'out')) == ['a0.png', 'a1.png']
    assert re.search(r'SAD\s+MSE\s+GRAD\s+CONN', result.stdout)


def test_precision_auto_follows_the_hardware(monkeypatch):
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)  # true on a T4 too: not asked
    for capability, expected in (((7, 5), torch.float16), ((7, 0), torch.float16), ((8, 0), torch.bfloat16),
                                 ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None, c=capability: c)
        assert net.pick_precision('auto', cuda) == expected, capability
    for amx, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(net, 'cpu_has_bf16', lambda has=amx: has)
        assert net.pick_precision('auto', cpu) == expected
    # a choice overrides the hardware, except fp16, which the CPU does not run
    assert net.pick_precision('bf16', cpu) == torch.bfloat16
    assert net.pick_precision('fp32', cuda) == torch.float32
    assert net.pick_precision('fp16', cuda) == torch.float16
    with pytest.raises(ValueError, match='fp16'):
        net.pick_precision('fp16', cpu)
    with pytest.raises(ValueError, match='fp8'):
        net.pick_precision('fp8', cpu)


def test_bf16_prediction_is_float32_and_close_to_fp32(model):
    image, trimap = make_sample(64, 80)
    fp32 = deploy.predict(model, image, trimap, 3, dtype=torch.float32)
    bf16 = deploy.predict(model, image, trimap, 3, dtype=torch.bfloat16)
    unknown = trimap == 128
    assert bf16.dtype == np.float32
    assert not np.array_equal(fp32[unknown], bf16[unknown])  # it did run in bf16
    assert np.abs(fp32 - bf16).max() < 0.02


def test_cli_refuses_fp16_on_the_cpu(model, tmp_path, capsys):
    image, trimap = make_sample(40, 40)
    data.write_png(str(tmp_path / 'img' / 'a.png'), image)
    data.write_png(str(tmp_path / 'tri' / 'a.png'), trimap)
    ckpt = str(tmp_path / 'm.pth')
    net.save_checkpoint({'format': net.CHECKPOINT_FORMAT, 'model': model.state_dict(), 'stage': 1}, ckpt)
    argv = ['--img_dir', str(tmp_path / 'img'), '--trimap_dir', str(tmp_path / 'tri'), '--resume', ckpt,
            '--save_dir', str(tmp_path / 'out'), '--device', 'cpu']
    assert deploy.main(argv + ['--precision', 'fp16']) == 2
    err = capsys.readouterr().err
    assert 'fp16' in err and len(err.strip().splitlines()) == 1
    assert deploy.main(argv + ['--precision', 'bf16']) == 0
    assert 'bfloat16' in capsys.readouterr().err


# ------------------------------------------------------------------------------ masks, cutouts, single files

def make_checkpoint(model, path, stage=1):
    net.save_checkpoint({'format': 1, 'model': model.state_dict(), 'stage': stage, 'step': 0}, path)
    return str(path)


def disc_mask(h, w):
    yy, xx = np.mgrid[:h, :w]
    return np.where(np.hypot(yy - h / 2, xx - w / 2) < min(h, w) / 3, 255, 0).astype(np.uint8)


def test_read_mask_refuses_bad_masks_naming_the_file(tmp_path):
    mask = disc_mask(24, 32)
    cases = {'empty.png': np.zeros_like(mask), 'full.png': np.full_like(mask, 255),
             'colour.png': np.dstack([mask, np.zeros_like(mask), 255 - mask])}
    for name, array in cases.items():
        write(tmp_path / name, array)
    for name, what in (('empty.png', 'the mask is empty'), ('full.png', 'the mask is all foreground'),
                       ('colour.png', 'expected a grayscale mask, found colour')):
        with pytest.raises(ValueError, match=re.escape(name) + ': ' + what):
            deploy.read_mask(str(tmp_path / name))
    write(tmp_path / 'gray_as_colour.png', np.dstack([mask] * 3))  # accepted, like a gray trimap saved as RGB
    write(tmp_path / 'sixteen.png', mask.astype(np.uint16) * 257)
    for name in ('gray_as_colour.png', 'sixteen.png'):
        assert np.array_equal(deploy.read_mask(str(tmp_path / name)), mask)


def test_cli_with_masks_reports_bad_masks_and_writes_the_others(model, tmp_path, capsys):
    img_dir, mask_dir, out_dir = tmp_path / 'image', tmp_path / 'mask', tmp_path / 'out'
    img_dir.mkdir()
    mask_dir.mkdir()
    image, _ = make_sample(40, 56)
    mask = disc_mask(40, 56)
    bad = {'empty': np.zeros_like(mask), 'full': np.full_like(mask, 255), 'small': mask[:32, :48],
           'colour': np.dstack([mask, np.zeros_like(mask), 255 - mask])}
    for name, array in dict(good=mask, **bad).items():
        write(img_dir / f'{name}.png', image[:, :, ::-1])
        write(mask_dir / f'{name}.png', array)
    ckpt = make_checkpoint(model, tmp_path / 'ckpt.pth')
    rc = deploy.main(['--img_dir', str(img_dir), '--mask_dir', str(mask_dir), '--band', '3', '--resume', ckpt,
                      '--save_dir', str(out_dir), '--device', 'cpu'])
    err = capsys.readouterr().err
    assert rc == 1 and sorted(os.listdir(out_dir)) == ['good.png']
    for name, what in (('empty', 'the mask is empty'), ('full', 'the mask is all foreground'),
                       ('small', 'mask is 48x32 but the image is 56x40'), ('colour', 'expected a grayscale mask')):
        assert re.search(r'error: \S*[/\\]' + name + r'\.png: ' + what, err), (name, err)
    matte = cv2.imread(str(out_dir / 'good.png'), cv2.IMREAD_UNCHANGED)
    trimap = data.mask_trimap(mask, 3)  # known regions come from the mask's trimap with the asked band
    assert np.all(matte[trimap == 255] == 255) and np.all(matte[trimap == 0] == 0)
    assert np.any((matte > 0) & (matte < 255)) and np.all(trimap[(matte > 0) & (matte < 255)] == 128)


def test_estimated_foreground_is_closer_than_the_composite_colours():
    h, w = 64, 64
    yy, xx = np.mgrid[:h, :w]
    fg = np.dstack([180 + 40 * np.sin(xx / 9), 60 + 30 * np.cos(yy / 7), np.full((h, w), 40.0)])
    bg = np.dstack([np.full((h, w), 20.0), 90 + 60 * np.sin((xx + yy) / 5), 200 + 40 * np.cos(xx / 4)])
    fg, bg = np.round(fg).astype(np.uint8), np.round(bg).astype(np.uint8)
    alpha = np.clip((24 - np.hypot(yy - 32, xx - 32)) / 12, 0, 1)  # a soft ring 12 pixels wide
    alpha8 = np.round(alpha * 255).astype(np.uint8)
    image = np.round(data.compose(fg, bg, alpha8)).astype(np.uint8)
    estimate = deploy.estimate_foreground(image, alpha8 / 255)
    part = (alpha8 > 0) & (alpha8 < 255)
    error_estimate = np.abs(estimate[part].astype(float) - fg[part]).mean()
    error_composite = np.abs(image[part].astype(float) - fg[part]).mean()
    assert error_estimate < 0.5 * error_composite, (error_estimate, error_composite)


def test_parse_color_and_fit_new_background():
    assert deploy.parse_color('#00ff00') == (0, 255, 0) == deploy.parse_color('0, 255, 0')
    assert deploy.parse_color('FF8000') == (255, 128, 0)
    for text in ('beach.jpg', '0,256,0', '#00ff0', '1,2'):
        assert deploy.parse_color(text) is None
    assert np.all(deploy.fit_new_background((1, 2, 3), 5, 7) == np.array([1, 2, 3]))
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, 15:25] = 255  # a white stripe in the middle of a wide background
    fitted = deploy.fit_new_background(wide, 20, 20)  # scaled 2x to cover 20 rows, the centre cut out
    assert fitted.shape == (20, 20, 3)
    assert np.all(fitted[:, 1:19] == 255) and np.all(fitted[:, :0] == 0)
    assert deploy.fit_new_background(wide, 5, 10).shape == (5, 10, 3)  # shrunk as well


def test_single_file_cli_writes_matte_cutout_and_composite(model, tmp_path, capsys):
    image, _ = make_sample(40, 56)
    mask = disc_mask(40, 56)
    write(tmp_path / 'photo.jpg', image[:, :, ::-1])
    write(tmp_path / 'my mask.png', mask)
    ckpt = make_checkpoint(model, tmp_path / 'ckpt.pth')
    out = tmp_path / 'result'
    rc = deploy.main([str(tmp_path / 'photo.jpg'), '--mask', str(tmp_path / 'my mask.png'), '--resume', ckpt,
                      '-o', str(out / 'matte.png'), '--cutout', str(out / 'cut.png'), '--new_bg', '#00ff00',
                      '--composite', str(out / 'green.png'), '--device', 'cpu'])
    assert rc == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == ['cut.png', 'green.png', 'matte.png']
    matte = cv2.imread(str(out / 'matte.png'), cv2.IMREAD_UNCHANGED)
    cutout = cv2.imread(str(out / 'cut.png'), cv2.IMREAD_UNCHANGED)
    assert cutout.shape == (40, 56, 4) and np.array_equal(cutout[:, :, 3], matte)  # the matte is its alpha
    green = data.read_image(str(out / 'green.png'))
    assert np.array_equal(green, deploy.composite_on(cutout[:, :, 2::-1], matte, deploy.fit_new_background(
        (0, 255, 0), 40, 56)))
    assert np.all(green[matte == 0] == [0, 255, 0]) and np.any(matte == 0)
    # the other spellings: --img / --trimap files with --out a folder: FOLDER/stem.png
    write(tmp_path / 'tri.png', data.mask_trimap(mask, 4))
    rc = deploy.main(['--img', str(tmp_path / 'photo.jpg'), '--trimap', str(tmp_path / 'tri.png'), '--resume',
                      ckpt, '--out', str(tmp_path / 'folder'), '--device', 'cpu'])
    assert rc == 0 and os.listdir(tmp_path / 'folder') == ['photo.png']


def test_single_file_cli_refuses_confusing_outputs(model, tmp_path, capsys):
    image, trimap = make_sample(24, 32)
    write(tmp_path / 'a.png', image)
    write(tmp_path / 't.png', trimap)
    ckpt = make_checkpoint(model, tmp_path / 'ckpt.pth')
    base = ['--trimap', str(tmp_path / 't.png'), '--resume', ckpt, '--device', 'cpu']
    cases = [([str(tmp_path / 'a.png'), '-o', str(tmp_path / 'm.jpg')], 'outputs are PNG'),
             ([str(tmp_path / 'a.png'), '-o', str(tmp_path / 't.png')], 'is the --trimap_dir file'),
             ([str(tmp_path / 'a.png'), '-o', str(tmp_path / 'x.png'), '--cutout', str(tmp_path / 'x.png')],
              'one would overwrite the other'),
             ([str(tmp_path / 'a.png'), '--img', str(tmp_path / 'a.png')], 'give one'),
             ([str(tmp_path / 'a.png'), '--new_bg', '#000000'], '--new_bg and --composite_dir go together'),
             ([str(tmp_path / 'a.png'), '--mask', str(tmp_path / 't.png'), '--band', 'wide'], 'band'),
             ([str(tmp_path / 'nothing.png')], 'no such file or folder')]
    for argv, what in cases:
        argv = argv + [a for a in base if not (argv.count('--mask') and a.endswith('t.png'))]
        if '--mask' in argv:
            argv.remove('--trimap')
        assert deploy.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and what in err, (argv, err)
    # folder of images with a file as output or as trimap
    (tmp_path / 'images').mkdir()
    write(tmp_path / 'images' / 'a.png', image)
    assert deploy.main(['--img_dir', str(tmp_path / 'images'), '--trimap', str(tmp_path / 't.png'),
                        '--resume', ckpt, '--device', 'cpu']) == 2
    assert 'the images are a folder' in capsys.readouterr().err
    assert deploy.main(['--img_dir', str(tmp_path / 'images'), '--trimap_dir', str(tmp_path), '-o',
                        str(tmp_path / 'out.png'), '--resume', ckpt, '--device', 'cpu']) == 2
    assert 'this must be a folder' in capsys.readouterr().err


def test_cutouts_without_pymatting_fail_in_one_line(model, tmp_path, capsys, monkeypatch):
    import sys
    image, trimap = make_sample(24, 32)
    write(tmp_path / 'a.png', image)
    write(tmp_path / 't.png', trimap)
    monkeypatch.setitem(sys.modules, 'pymatting', None)  # import pymatting now raises ImportError
    rc = deploy.main([str(tmp_path / 'a.png'), '--trimap', str(tmp_path / 't.png'), '--resume',
                      make_checkpoint(model, tmp_path / 'ckpt.pth'), '--cutout', str(tmp_path / 'c.png'),
                      '-o', str(tmp_path / 'm.png'), '--device', 'cpu'])
    err = capsys.readouterr().err
    assert rc == 2 and err.count('\n') == 1 and 'pip install pymatting' in err
    assert not os.path.exists(tmp_path / 'm.png')  # failed before any work


@pytest.mark.parametrize('shape, small', [((97, 61), (23, 17)), ((64, 64), (32, 32)), ((50, 80), (49, 79))])
def test_a_shrunk_trimap_loses_no_unknown_pixel(shape, small):
    rng = np.random.default_rng(0)
    trimap = np.where(rng.random(shape) < 0.5, 255, 0).astype(np.uint8)
    ys, xs = rng.integers(0, shape[0], 12), rng.integers(0, shape[1], 12)
    trimap[ys, xs] = 128  # single unknown pixels: a majority or nearest-pixel rule would drop them
    out = deploy.resize_trimap(trimap, *small)
    assert out.shape == small and set(np.unique(out)) <= {0, 128, 255}
    # the output pixel whose area holds each unknown pixel is unknown
    assert (out[ys * small[0] // shape[0], xs * small[1] // shape[1]] == 128).all()
    assert (deploy.resize_trimap(np.where(trimap == 128, 0, trimap), *small) != 128).all()  # none made up


class TileMean(torch.nn.Module):
    """A stand-in network that answers, for each tile, the mean of its image's red channel (in [0, 1]) at
    every pixel: tiles of a ramp disagree with their neighbours, as networks with too little context do."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, img, trimap, refine=True):
        red = img[:, :1] * float(data.IMAGENET_STD[0]) + float(data.IMAGENET_MEAN[0])  # N,1,H,W in [0, 1]
        return red.mean((2, 3), keepdim=True).expand_as(red), None


class Pixelwise(TileMean):
    """A stand-in network whose answer at a pixel is that pixel's red value: every tile agrees."""

    def forward(self, img, trimap, refine=True):
        return img[:, :1] * float(data.IMAGENET_STD[0]) + float(data.IMAGENET_MEAN[0]), None


def test_overlapping_tiles_blend_without_steps():
    h, w = 64, 160
    ramp = np.linspace(0, 255, w)
    image = np.repeat(np.broadcast_to(ramp, (h, w))[:, :, None], 3, axis=2).round().astype(np.uint8)
    trimap = np.full((h, w), 128, np.uint8)
    # where every tile gives the whole image's answer, the blend is that answer
    whole = deploy.predict(Pixelwise(), image, trimap, stage=1, method='whole')
    crop = deploy.predict(Pixelwise(), image, trimap, stage=1, method='crop', tile=32)
    np.testing.assert_allclose(crop, whole, atol=1e-6)
    # where neighbouring tiles disagree (24 columns of the ramp apart, 0.15 in alpha), the tent window fades
    # one into the other across their overlap; a flat window would step by half the disagreement at its ends
    alpha = deploy.predict(TileMean(), image, trimap, stage=1, method='crop', tile=32)
    steps = np.abs(np.diff(alpha, axis=1)).max()
    disagreement = 24 / w
    assert steps < disagreement / 4


@pytest.mark.parametrize('where', ['skip key', 'args'])
def test_deploy_builds_the_skip_variant_the_checkpoint_records(tmp_path, where):
    torch.manual_seed(0)
    skip = net.DIM(skip=True).eval()
    ckpt = {'format': net.CHECKPOINT_FORMAT, 'model': skip.state_dict(), 'stage': 1}
    ckpt.update({'skip': True} if where == 'skip key' else {'args': {'skip': True}})
    net.save_checkpoint(ckpt, str(tmp_path / 'skip.pth'))
    loaded, _ = deploy.load_model(str(tmp_path / 'skip.pth'), 'cpu')
    assert loaded.skip
    image, trimap = make_sample(64, 64)
    ours = deploy.predict(loaded, image, trimap, stage=1, dtype=torch.float32)
    plain = net.DIM().eval()
    plain.load_state_dict(skip.state_dict())  # the same weights without the skip connections differ
    assert not np.allclose(ours, deploy.predict(plain, image, trimap, stage=1, dtype=torch.float32), atol=1e-3)
    np.testing.assert_allclose(ours, deploy.predict(skip, image, trimap, stage=1, dtype=torch.float32), atol=1e-5)
