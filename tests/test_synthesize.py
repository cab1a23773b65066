import os

import cv2
import numpy as np
import pytest

import synthesize

import data  # noqa: E402

TINY = ['--num_train_fg', '3', '--num_test_fg', '3', '--num_bg', '2', '--num_test_bg', '2', '--size', '80',
        '--trimap_width', '3', '--sheet_rows', '2']


def files(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synth') / 'a')
    assert synthesize.main(['--out', root, '--seed', '0', '--workers', '1'] + TINY) == 0
    return root


def test_deterministic_across_workers_and_seeds(synth, tmp_path):
    assert synthesize.main(['--out', str(tmp_path / 'b'), '--seed', '0', '--workers', '2'] + TINY) == 0
    assert synthesize.main(['--out', str(tmp_path / 'c'), '--seed', '1', '--workers', '1'] + TINY) == 0
    a, b, c = files(synth), files(tmp_path / 'b'), files(tmp_path / 'c')
    assert 'contact_sheet.png' in a and len(a) > 20
    assert a == b  # same seed, 1 or 2 processes: byte-identical
    for name in a:
        if name.endswith('.png') and '/' in name:
            assert a[name] != c.get(name), name  # another seed: every image differs


def test_alpha_is_8bit_gray_with_fractional_values(synth):
    for split in ('train', 'test'):
        for name in data.list_images(os.path.join(synth, split, 'alpha')):
            alpha = cv2.imread(os.path.join(synth, split, 'alpha', name), cv2.IMREAD_UNCHANGED)
            fg = cv2.imread(os.path.join(synth, split, 'fg', name), cv2.IMREAD_UNCHANGED)
            assert alpha.dtype == np.uint8 and alpha.ndim == 2, name
            assert fg.dtype == np.uint8 and fg.shape == alpha.shape + (3,), name
            assert max(alpha.shape) == 80
            assert ((alpha > 0) & (alpha < 255)).sum() > 0.005 * alpha.size, name
            assert (alpha == 0).any(), name


def test_trimaps_are_consistent_with_alpha(synth):
    root = os.path.join(synth, 'test')
    names = data.list_images(os.path.join(root, 'trimap'))
    assert names == data.list_images(os.path.join(root, 'alpha')) and len(names) == 3
    for name in names:
        alpha = data.read_gray(os.path.join(root, 'alpha', name))
        trimap = data.read_gray(os.path.join(root, 'trimap', name))
        assert trimap.shape == alpha.shape
        assert set(np.unique(trimap)) <= {0, 128, 255}
        assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
        assert (trimap[(alpha > 0) & (alpha < 255)] == 128).all()
        assert (trimap == 0).any()
        assert np.array_equal(trimap, data.band_trimap(alpha, 3))


def test_name_lists(synth):
    fg_names = {}
    for split, num_bg in (('train', 2), ('test', 2)):
        root = os.path.join(synth, split)
        fgs = open(os.path.join(root, 'fg_names.txt')).read().split('\n')[:-1]
        bgs = open(os.path.join(root, 'bg_names.txt')).read().split('\n')[:-1]
        assert len(fgs) == 3 and len(bgs) == 3 * num_bg
        assert sorted(fgs) == data.list_images(os.path.join(root, 'fg'))
        assert sorted(fgs) == data.list_images(os.path.join(root, 'alpha'))
        assert all(os.path.isfile(os.path.join(root, 'bg', name)) for name in bgs)
        for name in bgs:
            assert data.read_image(os.path.join(root, 'bg', name)).ndim == 3
        fg_names[split] = set(fgs)
    assert not fg_names['train'] & fg_names['test']


def test_some_backgrounds_need_upscaling_and_some_do_not(tmp_path):
    root = str(tmp_path / 's')
    assert synthesize.main(['--out', root, '--workers', '1', '--num_train_fg', '4', '--num_bg', '4', '--num_test_fg',
                            '1', '--num_test_bg', '1', '--size', '48', '--sheet', '']) == 0
    assert not os.path.exists(os.path.join(root, 'contact_sheet.png'))
    train = os.path.join(root, 'train')
    fgs = open(os.path.join(train, 'fg_names.txt')).read().split()
    bgs = open(os.path.join(train, 'bg_names.txt')).read().split()
    upscaled = []
    for i, name in enumerate(fgs):
        h, w = data.read_gray(os.path.join(train, 'alpha', name)).shape
        for bg_name in bgs[4 * i:4 * i + 4]:
            bh, bw = data.read_image(os.path.join(train, 'bg', bg_name)).shape[:2]
            upscaled.append(bh < h or bw < w)
    assert any(upscaled) and not all(upscaled)


def test_photo_backgrounds(tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        ext = '.jpg' if i % 2 else '.png'
        assert cv2.imwrite(str(photos / f'p{i}{ext}'), rng.integers(0, 256, (40 + i, 60, 3), dtype=np.uint8))
    root = str(tmp_path / 'out')
    assert synthesize.main(['--out', root, '--bg_dir', str(photos), '--workers', '1', '--num_train_fg', '2',
                            '--num_bg', '3', '--num_test_fg', '1', '--num_test_bg', '2', '--size', '48']) == 0
    pools = {}
    for split in ('train', 'test'):
        bgs = open(os.path.join(root, split, 'bg_names.txt')).read().split()
        for name in bgs:  # copied byte for byte
            with open(os.path.join(root, split, 'bg', name), 'rb') as a, open(photos / name, 'rb') as b:
                assert a.read() == b.read()
        pools[split] = set(bgs)
    assert not pools['train'] & pools['test']


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    assert synthesize.main(['--out', str(tmp_path), '--bg_dir', str(tmp_path / 'missing')]) != 0
    assert 'missing' in capsys.readouterr().err
    assert synthesize.main(['--out', str(tmp_path), '--size', '1', '2', '3']) != 0
    with pytest.raises(SystemExit):
        synthesize.main(['--out', str(tmp_path), '--num_train', '3'])  # no abbreviations


def test_most_foregrounds_are_opaque_subjects():
    rng = np.random.default_rng(0)
    opaque = 0
    for kind in synthesize.KINDS:
        _, alpha = synthesize.make_foreground(rng, 96, 96, kind)
        opaque += (alpha == 255).mean() > 0.05  # a solid body, not only glass, smoke or a net
    assert opaque >= 0.6 * len(synthesize.KINDS)


def test_photographs_texture_foregrounds_and_backgrounds(tmp_path):
    magenta = np.zeros((120, 150, 3), np.uint8) + np.array([255, 0, 255], np.uint8)
    data.write_png(str(tmp_path / 'photos' / 'magenta.png'), magenta)

    def magenta_share(photo_dir):
        out = tmp_path / photo_dir.replace('/', '_')
        assert synthesize.main(['--out', str(out), '--workers', '1', '--photo_dir', photo_dir] + TINY) == 0
        images = [data.read_image(os.path.join(out, 'train', sub, name)).astype(int)
                  for sub in ('fg', 'bg') for name in data.list_images(os.path.join(out, 'train', sub))]
        near = [(np.abs(im - [255, 0, 255]).max(axis=2) < 90).mean() for im in images]
        return np.mean(near)

    assert magenta_share(str(tmp_path / 'photos')) > 0.3
    assert magenta_share('none') < 0.05
