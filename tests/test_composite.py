"""tools/composite.py on tiny generated images: the dataset's composition rule, pairing, reruns, bad inputs."""
import csv
import os

import cv2
import numpy as np
import pytest

import composite
import data



def make_source(root, fgs, bgs, trimaps=False):
    """fgs: {file name: (fg RGB, alpha)}; bgs: {file name: RGB}. Returns the folders as CLI flags."""
    for sub in ('fg', 'alpha', 'bg', 'trimap'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for name, (fg, alpha) in fgs.items():
        data.write_png(os.path.join(root, 'fg', name), fg)
        data.write_png(os.path.join(root, 'alpha', name), alpha)
        if trimaps:
            data.write_png(os.path.join(root, 'trimap', name), data.band_trimap(alpha, 2))
    for name, bg in bgs.items():
        data.write_png(os.path.join(root, 'bg', name), bg)
    flags = ['--fg_dir', os.path.join(root, 'fg'), '--alpha_dir', os.path.join(root, 'alpha'),
             '--bg_dir', os.path.join(root, 'bg'), '--workers', '1']
    return flags + (['--trimap_dir', os.path.join(root, 'trimap')] if trimaps else [])


def solid(h, w, colour):
    return np.full((h, w, 3), colour, np.uint8)


def read_csv(out):
    with open(os.path.join(out, 'composites.csv'), newline='') as f:
        return list(csv.DictReader(f))


def test_composite_of_known_colours_is_truncated_float(tmp_path):
    alpha = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (5, 1))  # 5 x 64, every 4th level
    fg_colour, bg_colour = (201, 99, 13), (17, 230, 128)
    flags = make_source(tmp_path / 'src', {'a.png': (solid(5, 64, fg_colour), alpha)},
                        {'b.png': solid(20, 80, bg_colour)})
    out = str(tmp_path / 'out')
    assert composite.main(flags + ['--out_dir', out, '--num_bg', '1']) == 0
    image = data.read_image(os.path.join(out, 'image', 'a_0.png'))
    a = alpha.astype(np.float64)[:, :, None] / 255
    expected = np.floor(a * np.array(fg_colour, np.float64) + (1 - a) * np.array(bg_colour, np.float64))
    np.testing.assert_array_equal(image, expected.astype(np.uint8))
    # a truncation, not a rounding: some pixel must differ from the rounded value
    assert (np.round(a * np.array(fg_colour) + (1 - a) * np.array(bg_colour)) != expected).any()


@pytest.mark.parametrize('resize', ['pillow', 'opencv'])
def test_small_background_upscaled_with_ceil_and_large_one_cropped_top_left(tmp_path, resize):
    if resize == 'pillow':  # the filter of the dataset's own script; Pillow is optional
        image = pytest.importorskip('PIL.Image')
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (7, 13, 3), dtype=np.uint8)  # 13 x 7: r = max(40/13, 30/7) = 30/7
    large = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    flags = make_source(tmp_path / 'src', {'f.png': (solid(30, 40, 255), np.zeros((30, 40), np.uint8))},
                        {'1small.png': small, '2large.png': large})
    out = str(tmp_path / 'out')
    assert composite.main(flags + ['--out_dir', out, '--num_bg', '2', '--resize', resize]) == 0
    ratio = 30 / 7
    size = (int(np.ceil(13 * ratio)), int(np.ceil(7 * ratio)))  # (w, h) = (56, 30)
    assert size == (56, 30)
    if resize == 'pillow':
        expected = np.asarray(image.fromarray(small).resize(size, image.BICUBIC))[:30, :40]
    else:
        expected = cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)[:30, :40]
    np.testing.assert_array_equal(data.read_image(os.path.join(out, 'image', 'f_0.png')), expected)
    np.testing.assert_array_equal(data.read_image(os.path.join(out, 'image', 'f_1.png')), large[:30, :40])


def test_adobe_name_lists_pair_in_order(tmp_path):
    colours = {f'bg{j}.png': (10 * j, 0, 0) for j in range(6)}
    fgs = {n: (solid(8, 8, 0), np.zeros((8, 8), np.uint8)) for n in ('zeta.png', 'alpha1.png')}
    flags = make_source(tmp_path / 'src', fgs, {n: solid(8, 8, c) for n, c in colours.items()})
    fg_list, bg_list = tmp_path / 'fg_names.txt', tmp_path / 'bg_names.txt'
    fg_list.write_text('zeta.png\nalpha1.png\n')  # not sorted: the list's order rules
    pairs = ['bg5.png', 'bg0.png', 'bg3.png', 'bg3.png', 'bg1.png', 'bg4.png']
    bg_list.write_text('\n'.join(pairs) + '\n')
    out = str(tmp_path / 'out')
    assert composite.main(flags + ['--out_dir', out, '--num_bg', '3', '--fg_names', str(fg_list),
                                   '--bg_names', str(bg_list)]) == 0
    names = ['zeta_0', 'zeta_1', 'zeta_2', 'alpha1_0', 'alpha1_1', 'alpha1_2']
    rows = read_csv(out)
    assert [r['name'] for r in rows] == names
    assert [os.path.basename(r['bg']) for r in rows] == pairs
    for name, bg in zip(names, pairs):  # alpha 0: the composite is its background
        assert tuple(data.read_image(os.path.join(out, 'image', name + '.png'))[0, 0]) == colours[bg]
    # a list whose length does not fit num_bg is refused before anything is written
    assert composite.main(flags + ['--out_dir', str(tmp_path / 'o2'), '--num_bg', '2', '--fg_names', str(fg_list),
                                   '--bg_names', str(bg_list)]) == 2
    assert not os.path.exists(tmp_path / 'o2')


def test_without_lists_sorted_and_cycling(tmp_path):
    fgs = {n: (solid(4, 4, 0), np.zeros((4, 4), np.uint8)) for n in ('b.png', 'a.png')}
    flags = make_source(tmp_path / 'src', fgs, {f'{c}.png': solid(4, 4, i) for i, c in enumerate('xyz')})
    out = str(tmp_path / 'out')
    assert composite.main(flags + ['--out_dir', out, '--num_bg', '2']) == 0
    rows = read_csv(out)
    assert [(r['name'], os.path.basename(r['bg'])) for r in rows] == \
        [('a_0', 'x.png'), ('a_1', 'y.png'), ('b_0', 'z.png'), ('b_1', 'x.png')]
    entries = data.read_composite_list(out)  # paths relative to OUT resolve to the sources
    assert entries[2]['fg'] == os.path.join(str(tmp_path), 'src', 'fg', 'b.png')
    assert os.path.isfile(entries[2]['bg']) and entries[0]['alpha'].endswith(os.path.join('alpha', 'a.png'))


def test_rerun_skips_finished_outputs(tmp_path, capsys):
    fgs = {'a.png': (solid(6, 6, 200), np.full((6, 6), 128, np.uint8))}
    flags = make_source(tmp_path / 'src', fgs, {'x.png': solid(6, 6, 0), 'y.png': solid(6, 6, 50)})
    out = str(tmp_path / 'out')
    args = flags + ['--out_dir', out, '--num_bg', '2']
    assert composite.main(args) == 0
    marker = solid(6, 6, 77)
    data.write_png(os.path.join(out, 'image', 'a_0.png'), marker)  # stands for a finished file
    os.remove(os.path.join(out, 'image', 'a_1.png'))  # as if interrupted before it was written
    open(os.path.join(out, 'image', 'a_1.png.123.tmp'), 'wb').close()  # a half-written file is no output
    capsys.readouterr()
    assert composite.main(args) == 0
    assert '1 written now, 1 already there' in capsys.readouterr().err
    np.testing.assert_array_equal(data.read_image(os.path.join(out, 'image', 'a_0.png')), marker)
    assert os.path.isfile(os.path.join(out, 'image', 'a_1.png'))
    assert [r['name'] for r in read_csv(out)] == ['a_0', 'a_1']


def test_bad_inputs_reported_by_name_and_others_written(tmp_path, capsys):
    fgs = {'good.png': (solid(6, 6, 200), np.full((6, 6), 128, np.uint8)),
           'bad.png': (solid(6, 6, 200), np.full((6, 6), 128, np.uint8))}
    flags = make_source(tmp_path / 'src', fgs, {'x.png': solid(6, 6, 0)})
    bad_alpha = os.path.join(str(tmp_path), 'src', 'alpha', 'bad.png')
    data.write_png(bad_alpha, np.zeros((5, 6), np.uint8))  # another size than its foreground
    with open(os.path.join(str(tmp_path), 'src', 'bg', 'broken.png'), 'wb') as f:
        f.write(b'not a png')
    fg_list, bg_list = tmp_path / 'fg.txt', tmp_path / 'bg.txt'
    fg_list.write_text('good.png\nbad.png\nmissing.png\n')
    bg_list.write_text('x.png\nbroken.png\nx.png\nx.png\nx.png\ngone.png\n')
    out = str(tmp_path / 'out')
    rc = composite.main(flags + ['--out_dir', out, '--num_bg', '2', '--fg_names', str(fg_list),
                                 '--bg_names', str(bg_list)])
    err = capsys.readouterr().err
    assert rc == 1
    assert bad_alpha in err and 'alpha is 6x5' in err  # the mismatched alpha, by name
    assert 'broken.png' in err and 'good_1' in err  # the unreadable background and its composite
    assert 'missing.png' in err  # a listed foreground that is not there
    assert 'gone.png' not in err  # ... is not paired: its foreground already failed
    assert os.listdir(os.path.join(out, 'image')) == ['good_0.png']
    assert [r['name'] for r in read_csv(out)] == ['good_0']


def test_test_split_copies_trimap_and_alpha_per_composite(tmp_path):
    alpha = np.zeros((12, 12), np.uint8)
    alpha[3:9, 3:9] = 255
    alpha[6, 3:9] = 100
    flags = make_source(tmp_path / 'src', {'t.png': (solid(12, 12, 90), alpha)},
                        {'x.png': solid(12, 12, 0), 'y.png': solid(12, 12, 9)}, trimaps=True)
    out = str(tmp_path / 'out')
    assert composite.main(flags + ['--out_dir', out, '--num_bg', '2', '--workers', '2']) == 0
    for i in range(2):
        np.testing.assert_array_equal(data.read_gray(os.path.join(out, 'trimap', f't_{i}.png')),
                                      data.band_trimap(alpha, 2))
        np.testing.assert_array_equal(data.read_gray(os.path.join(out, 'alpha', f't_{i}.png')), alpha)
    ds = data.TestDataset(os.path.join(out, 'image'), os.path.join(out, 'trimap'), os.path.join(out, 'alpha'))
    assert [ds[i]['name'] for i in range(len(ds))] == ['t_0', 't_1']


def test_flags_are_never_abbreviated():
    parser = composite.get_args_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(['--fg', 'a', '--alpha_dir', 'b', '--bg_dir', 'c', '--out_dir', 'd'])
    args = parser.parse_args(['--fg_dir', 'a', '--alpha_dir', 'b', '--bg_dir', 'c', '--out_dir', 'd'])
    assert args.num_bg == 100 and args.copy_alpha is None
    assert parser.parse_args(['--fg_dir', 'a', '--alpha_dir', 'b', '--bg_dir', 'c', '--out_dir', 'd',
                              '--no_copy_alpha']).copy_alpha is False
