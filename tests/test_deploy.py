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
    return net.DIM().eval()


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
        assert deploy.pick_precision('auto', cuda) == expected, capability
    for amx, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(deploy, 'cpu_has_amx', lambda amx=amx: amx)
        assert deploy.pick_precision('auto', cpu) == expected
    # a choice overrides the hardware, except fp16, which the CPU does not run
    assert deploy.pick_precision('bf16', cpu) == torch.bfloat16
    assert deploy.pick_precision('fp32', cuda) == torch.float32
    assert deploy.pick_precision('fp16', cuda) == torch.float16
    with pytest.raises(ValueError, match='fp16'):
        deploy.pick_precision('fp16', cpu)
    with pytest.raises(ValueError, match='fp8'):
        deploy.pick_precision('fp8', cpu)


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
