"""data.py on tiny generated images: composition rule, crops, trimaps, datasets and their determinism."""
import os

import cv2
import numpy as np
import pytest
import torch

import data


def blob(h, w, seed=0):
    """Foreground RGB noise and a soft-edged elliptic alpha (255 inside, 0 outside, a ramp between)."""
    rng = np.random.default_rng(seed)
    fg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot((y - h / 2) / (h / 3), (x - w / 2) / (w / 3))
    alpha = np.clip((1.2 - r) / 0.4 * 255, 0, 255).astype(np.uint8)
    return fg, alpha


def write_set(root, sizes, bg_sizes):
    """Foregrounds of the given (h, w) sizes with alphas, and noise backgrounds; returns entries
    pairing foreground k with background k % len(bg_sizes)."""
    rng = np.random.default_rng(1)
    bgs = []
    for j, (h, w) in enumerate(bg_sizes):
        bgs.append(os.path.join(root, 'bg', f'b{j}.png'))
        data.write_png(bgs[-1], rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    entries = []
    for k, (h, w) in enumerate(sizes):
        fg, alpha = blob(h, w, seed=k)
        e = dict(name=f'f{k}', fg=os.path.join(root, 'fg', f'f{k}.png'), alpha=os.path.join(root, 'alpha', f'f{k}.png'),
                 bg=bgs[k % len(bgs)])
        data.write_png(e['fg'], fg)
        data.write_png(e['alpha'], alpha)
        entries.append(e)
    return entries


def whole_first(fg, alpha, bg, crop_size, centre, flip, k_erode, k_dilate, size=320):
    """Reference for data.train_sample: fit the whole background and compose the whole image first,
    then crop, flip and resize everything."""
    h, w = alpha.shape
    bg = data.fit_background(bg, h, w)
    s = crop_size
    if h < s or w < s:
        ratio = max(s / h, s / w)
        dsize = (max(int(w * ratio), s), max(int(h * ratio), s))
        fg, bg, alpha = (cv2.resize(x, dsize, interpolation=cv2.INTER_LINEAR) for x in (fg, bg, alpha))
        h, w = alpha.shape
    whole = data.compose(fg, bg, alpha, np.float32)
    unknown = np.flatnonzero((alpha > 0) & (alpha < 255))
    cy, cx = divmod(int(unknown[int(centre * len(unknown))]), w) if len(unknown) else (h // 2, w // 2)
    top, left = min(max(cy - s // 2, 0), h - s), min(max(cx - s // 2, 0), w - s)
    out = {k: x[top:top + s, left:left + s] for k, x in dict(fg=fg, bg=bg, alpha=alpha, img=whole).items()}
    if flip:
        out = {k: x[:, ::-1] for k, x in out.items()}
    if s != size:
        out = {k: cv2.resize(np.ascontiguousarray(x), (size, size), interpolation=cv2.INTER_LINEAR)
               for k, x in out.items()}
    out['trimap'] = data.random_trimap(np.ascontiguousarray(out['alpha']), k_erode, k_dilate)
    return out


# ------------------------------------------------------------------------------- composition

def test_compose_known_colours_truncated():
    alpha = np.array([[0, 1, 127, 128, 254, 255]], np.uint8)
    fg, bg = np.full((1, 6, 3), (250, 3, 100), np.uint8), np.full((1, 6, 3), (5, 200, 100), np.uint8)
    a = alpha[0].astype(np.float64) / 255
    for c, (f, b) in enumerate([(250, 5), (3, 200), (100, 100)]):
        np.testing.assert_array_equal(data.compose(fg, bg, alpha).astype(np.uint8)[0, :, c],
                                      np.floor(a * f + (1 - a) * b).astype(np.uint8))


def test_fit_background_upscales_small_with_ceil_and_crops_top_left():
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (10, 16, 3), dtype=np.uint8)
    out = data.fit_background(bg, 31, 40)  # r = max(40/16, 31/10) = 3.1 -> 50 x 31 (ceil of 49.6)
    np.testing.assert_array_equal(out, cv2.resize(bg, (50, 31), interpolation=cv2.INTER_CUBIC)[:31, :40])
    np.testing.assert_array_equal(data.fit_background(bg, 4, 7), bg[:4, :7])  # larger: never downscaled
    np.testing.assert_array_equal(data.fit_background(bg, 10, 16), bg)


def test_fit_background_window_equals_whole_result():
    rng = np.random.default_rng(3)
    for trial in range(40):
        bh, bw = (int(v) for v in rng.integers(20, 90, 2))
        h, w = (int(v) for v in rng.integers(40, 260, 2))
        bg = rng.integers(0, 256, (bh, bw, 3), dtype=np.uint8)
        whole = data.fit_background(bg, h, w)
        for _ in range(3):
            height, width = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            top, left = int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1))
            win = data.fit_background_window(bg, h, w, top, left, height, width)
            assert win.shape == (height, width, 3)
            diff = np.abs(win.astype(int) - whole[top:top + height, left:left + width])
            assert diff.max() <= 1, (bh, bw, h, w, top, left, height, width)


def test_normalize_float_path_equals_uint8_path():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = data.normalize(image)
    assert x.shape == (3, 5, 7) and x.dtype == np.float32 and x.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(data.normalize(image.astype(np.float32)), x)
    expected = (image / 255 - data.IMAGENET_MEAN) / data.IMAGENET_STD
    np.testing.assert_allclose(x, expected.transpose(2, 0, 1), atol=1e-5)


# ------------------------------------------------------------------------------ crops, trimaps

def test_crop_window_contains_centre_and_stays_inside():
    for h, w, s in [(10, 10, 10), (10, 17, 4), (33, 12, 7), (5, 9, 1)]:
        for cy in range(h):
            for cx in range(w):
                top, left = data.crop_window(h, w, cy, cx, s)
                assert 0 <= top <= h - s and 0 <= left <= w - s
                assert top <= cy < top + s and left <= cx < left + s


def test_random_trimap_values_and_known_regions():
    _, alpha = blob(60, 80)
    for k_e, k_d in [(1, 1), (1, 29), (29, 1), (7, 13)]:
        trimap = data.random_trimap(alpha, k_e, k_d)
        assert set(np.unique(trimap)) <= {0, 128, 255}
        assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
        assert (trimap[(alpha > 0) & (alpha < 255)] == 128).all()
    wide = data.random_trimap(alpha, 29, 29)
    assert (wide == 128).sum() > (data.random_trimap(alpha, 1, 1) == 128).sum()


def test_train_sample_crop_first_equals_whole_first():
    rng = np.random.default_rng(5)
    cases = [((700, 900), (200, 300)), ((700, 900), (800, 1000)), ((500, 600), (120, 90)),  # upscaled bgs, large bg
             ((300, 250), (100, 160))]  # foreground smaller than every crop: everything upscaled first
    for (h, w), (bh, bw) in cases:
        fg, alpha = blob(h, w)
        bg = rng.integers(0, 256, (bh, bw, 3), dtype=np.uint8)
        for crop_size in (320, 480, 640):
            d = dict(crop_size=crop_size, centre=float(rng.random()), flip=bool(rng.random() < 0.5),
                     k_erode=int(rng.integers(1, 30)), k_dilate=int(rng.integers(1, 30)))
            got, ref = data.train_sample(fg, alpha, bg, **d), whole_first(fg, alpha, bg, **d)
            for k in ('fg', 'alpha', 'trimap'):
                np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
            assert np.abs(got['bg'].astype(int) - ref['bg']).max() <= 1
            img = data.compose(got['fg'], got['bg'], got['alpha'], np.float32)  # as batch_to_device composes
            if crop_size == 320 and h >= 320 and w >= 320:  # no resize: the whole composite's crop itself
                assert np.abs(img - ref['img']).max() <= 1 + 1e-3


def test_crop_without_unknown_pixels():
    fg = np.full((400, 500, 3), 60, np.uint8)
    bg = np.zeros((100, 100, 3), np.uint8)
    s = data.train_sample(fg, np.full((400, 500), 255, np.uint8), bg, 480, 0.3, False, 3, 3)
    assert (s['trimap'] == 255).all() and (s['alpha'] == 255).all() and (s['fg'] == 60).all()  # nothing failed
    alpha = np.zeros((400, 500), np.uint8)
    alpha[:, 250:] = 255  # a hard edge: no 0 < alpha < 255, crop at the image centre
    s = data.train_sample(fg, alpha, bg, 320, 0.9, False, 5, 5)
    assert set(np.unique(s['trimap'])) == {0, 128, 255}
    assert (s['alpha'][:, :160] == 0).all() and (s['alpha'][:, 160:] == 255).all()  # centred on (200, 250)


# ------------------------------------------------------------------------------------ lists, splits

def test_composite_list_round_trip_and_lookup(tmp_path):
    entries = write_set(str(tmp_path / 'src'), [(20, 30), (25, 20)], [(10, 10)])
    out = tmp_path / 'out'
    (out / 'image').mkdir(parents=True)
    data.write_composite_list(str(out / 'composites.csv'), entries)
    text = (out / 'composites.csv').read_text()
    assert text.startswith('name,fg,alpha,bg\n') and '../src/fg/f0.png' in text and str(tmp_path) not in text
    for where in (out / 'composites.csv', out, out / 'image'):  # the file, OUT and OUT/image (old --imgDir)
        assert data.read_composite_list(str(where)) == [{k: os.path.normpath(e[k]) if k != 'name' else e[k]
                                                          for k in e} for e in entries]
    os.remove(entries[1]['alpha'])
    with pytest.raises(ValueError, match='f1.png'):
        data.read_composite_list(str(out))
    with pytest.raises(ValueError, match='composites.csv'):
        data.read_composite_list(str(tmp_path / 'src'))


def test_split_by_foreground_never_shares_a_foreground():
    entries = [dict(name=f'{k}_{i}', fg=f'/fg/{k}.png', alpha=f'/a/{k}.png', bg=f'/bg/{i}.png')
               for k in range(10) for i in range(5)]
    train, val = data.split_by_foreground(entries, 0.2, seed=0)
    assert len(val) == 2 * 5 and len(train) == 8 * 5
    assert not {e['fg'] for e in train} & {e['fg'] for e in val}
    assert data.split_by_foreground(entries, 0.2, seed=0) == (train, val)
    assert data.split_by_foreground(entries, 0.2, seed=1)[1] != val
    assert data.split_by_foreground(entries, 0.0, seed=0) == (entries, [])
    assert len(data.split_by_foreground(entries[:5], 0.5, seed=0)[1]) == 0  # one foreground: nothing to hold out
    assert len(data.split_by_foreground(entries, 0.01, seed=0)[1]) == 5  # at least one foreground


def test_entries_from_folders_match_alpha_by_stem(tmp_path):
    fg, alpha = blob(8, 8)
    for name in ('b.jpg', 'a.png'):
        data.write_png(str(tmp_path / 'fg' / name), fg)
    for name in ('b.png', 'a.png'):
        data.write_png(str(tmp_path / 'alpha' / name), alpha)
    for name in ('x.png', 'y.png', 'z.png'):
        data.write_png(str(tmp_path / 'bg' / name), fg)
    entries = data.entries_from_folders(str(tmp_path / 'fg'), str(tmp_path / 'alpha'))
    assert [(e['name'], os.path.basename(e['alpha']), e['bg']) for e in entries] == [('a', 'a.png', None),
                                                                                      ('b', 'b.png', None)]
    paired = data.entries_from_folders(str(tmp_path / 'fg'), str(tmp_path / 'alpha'), str(tmp_path / 'bg'))
    assert [os.path.basename(e['bg']) for e in paired] == ['x.png', 'y.png']
    os.remove(str(tmp_path / 'alpha' / 'b.png'))
    with pytest.raises(ValueError, match='no alpha'):
        data.entries_from_folders(str(tmp_path / 'fg'), str(tmp_path / 'alpha'))


# ------------------------------------------------------------------------------------ datasets

@pytest.fixture(scope='module')
def train_entries(tmp_path_factory):
    return write_set(str(tmp_path_factory.mktemp('train')), [(360, 500), (700, 520), (200, 260)],
                     [(90, 120), (800, 900)])


def test_train_dataset_tensors(train_entries):
    ds = data.TrainDataset(train_entries, seed=3)
    for i in range(len(ds)):
        s = ds[i]
        assert s.keys() == {'fg', 'bg', 'alpha', 'trimap'}
        assert s['fg'].shape == s['bg'].shape == (3, 320, 320)
        assert s['trimap'].shape == s['alpha'].shape == (1, 320, 320)
        assert all(v.dtype == torch.uint8 and v.is_contiguous() for v in s.values())
        assert sum(v.nbytes for v in s.values()) == 8 * 320 * 320  # the loader's payload: 8 bytes a pixel
        assert set(s['trimap'].unique().tolist()) <= {0, 128, 255}
        assert (s['alpha'][s['trimap'] == 255] == 255).all() and (s['alpha'][s['trimap'] == 0] == 0).all()


def float_batch_on_the_cpu(samples):
    """The float32 batch as the loader made it before it shipped uint8: the composite of `compose` and
    `normalize` in numpy, fg, bg and alpha divided by 255."""
    def one(s):
        fg, bg, alpha = (s[k].permute(1, 2, 0).numpy() for k in ('fg', 'bg', 'alpha'))
        img = data.normalize(data.compose(fg, bg, alpha[:, :, 0], np.float32))
        return dict(img=torch.from_numpy(img), trimap=s['trimap'].float(), alpha=s['alpha'].float().div_(255),
                    fg=s['fg'].float().div_(255), bg=s['bg'].float().div_(255))

    return torch.utils.data.default_collate([one(s) for s in samples])


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_batch_to_device_makes_the_float_batch_of_the_cpu(train_entries, device):
    ds = data.TrainDataset(train_entries, seed=3)
    samples = [ds[i] for i in range(len(ds))]
    batch = torch.utils.data.default_collate(samples)
    if device == 'cuda':
        batch = {k: v.pin_memory() for k, v in batch.items()}  # as train.py's loader gives it
    got = data.batch_to_device(batch, torch.device(device))
    expected = float_batch_on_the_cpu(samples)
    assert got.keys() == expected.keys()
    for k in expected:  # the same float32 operations in the same order: equal, not close
        assert got[k].device.type == device and got[k].dtype == torch.float32
        assert torch.equal(got[k].cpu(), expected[k]), k


def test_train_sample_depends_on_seed_epoch_index_only(train_entries):
    ds = data.TrainDataset(train_entries, seed=7)
    first = [ds[i] for i in range(len(ds))]
    again = data.TrainDataset(train_entries, seed=7)
    for i in reversed(range(len(ds))):  # another order, a fresh cache
        assert all(torch.equal(first[i][k], again[i][k]) for k in first[i])
    ds.set_epoch(1)
    assert ds.epoch == 1
    assert any(not torch.equal(first[i]['fg'], ds[i]['fg']) for i in range(len(ds)))
    other_seed = data.TrainDataset(train_entries, seed=8)
    assert any(not torch.equal(first[i]['fg'], other_seed[i]['fg']) for i in range(len(ds)))


def test_same_samples_with_0_and_2_workers(train_entries):
    ds = data.TrainDataset(train_entries * 2, seed=11)
    ds.set_epoch(4)
    direct = [ds[i] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, persistent_workers=True)
    for i, batch in enumerate(loader):
        assert all(torch.equal(batch[k][0], direct[i][k]) for k in direct[i])
    ds.set_epoch(5)  # reaches the persistent workers
    fresh = data.TrainDataset(train_entries * 2, seed=11)
    fresh.set_epoch(5)
    for i, batch in enumerate(loader):
        assert all(torch.equal(batch[k][0], fresh[i][k]) for k in direct[i])


def test_online_mode_draws_backgrounds(train_entries, tmp_path):
    rng = np.random.default_rng(0)
    bgs = []
    for j in range(4):
        bgs.append(str(tmp_path / f'o{j}.png'))
        noise = rng.integers(0, 3, (50, 60, 3), dtype=np.uint8)
        data.write_png(bgs[-1], np.full((50, 60, 3), 60 * j, np.uint8) + noise)
    entries = [dict(e, bg=None) for e in train_entries] * 4
    with pytest.raises(ValueError, match='online_bgs'):
        data.TrainDataset(entries)
    ds = data.TrainDataset(entries, online_bgs=bgs, seed=2)
    chosen = [ds.draw(i)['bg'] for i in range(len(ds))]
    assert len(set(chosen)) > 1 and set(chosen) <= set(bgs)
    s = ds[0]
    bg_level = round(float(s['bg'].float().mean()) / 60)
    assert chosen[0] == bgs[bg_level]


def test_test_dataset_matches_by_stem(tmp_path):
    fg, alpha = blob(12, 16)
    data.write_png(str(tmp_path / 'img' / 'a.png'), fg)
    cv2.imwrite(str(tmp_path / 'img' / 'b.jpg'), fg)
    for name in ('a', 'b'):
        data.write_png(str(tmp_path / 'trimap' / f'{name}.png'), data.band_trimap(alpha, 2))
        data.write_png(str(tmp_path / 'alpha' / f'{name}.png'), alpha)
    ds = data.TestDataset(str(tmp_path / 'img'), str(tmp_path / 'trimap'), str(tmp_path / 'alpha'))
    assert len(ds) == 2 and [ds[i]['name'] for i in range(2)] == ['a', 'b']
    s = ds[0]
    np.testing.assert_array_equal(s['image'], fg)
    np.testing.assert_array_equal(s['alpha'], alpha)
    np.testing.assert_array_equal(s['trimap'], data.band_trimap(alpha, 2))
    assert data.TestDataset(str(tmp_path / 'img'), str(tmp_path / 'trimap'))[1]['alpha'] is None
    data.write_png(str(tmp_path / 'trimap' / 'a.png'), np.zeros((12, 15), np.uint8))
    with pytest.raises(ValueError, match='15x12'):
        ds[0]
    os.remove(str(tmp_path / 'trimap' / 'b.png'))
    with pytest.raises(ValueError, match='trimap'):
        data.TestDataset(str(tmp_path / 'img'), str(tmp_path / 'trimap'))


def test_val_dataset_recomposes_like_composite_tool(train_entries):
    ds = data.ValDataset(train_entries[:2], trimap_width=4)
    s = ds[1]
    fg, alpha, bg = (data.read_image(train_entries[1]['fg']), data.read_gray(train_entries[1]['alpha']),
                     data.read_image(train_entries[1]['bg']))
    expected = data.compose(fg, data.fit_background(bg, 700, 520), alpha).astype(np.uint8)
    np.testing.assert_array_equal(s['image'], expected)
    np.testing.assert_array_equal(s['trimap'], data.band_trimap(alpha, 4))
    assert s['name'] == 'f1'
    small = data.ValDataset(train_entries[:2], max_size=350)[1]
    assert small['image'].shape == (350, 260, 3) and small['alpha'].shape == small['trimap'].shape == (350, 260)
    with pytest.raises(ValueError, match='no background'):
        data.ValDataset([dict(train_entries[0], bg=None)])


def distance_to_other_class(mask):
    """Euclidean distance of every pixel to the nearest pixel of the other class (mask >= 128 or not)."""
    fg = (mask >= 128).astype(np.uint8)
    inside = cv2.distanceTransform(fg, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - fg, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(fg == 1, inside, outside)


def test_mask_trimap_band_is_width_pixels_on_each_side_of_the_boundary():
    mask = np.zeros((20, 40), np.uint8)
    mask[:, :17] = 255  # foreground columns 0..16: the boundary lies between columns 16 and 17
    trimap = data.mask_trimap(mask, 4)
    assert np.array_equal(np.unique(np.nonzero(trimap == 128)[1]), np.arange(13, 21))  # 4 each side
    assert np.all(trimap[:, :13] == 255) and np.all(trimap[:, 21:] == 0)
    yy, xx = np.mgrid[:101, :101]
    disc = np.where(np.hypot(yy - 50, xx - 47) < 30, 255, 0).astype(np.uint8)
    distance = distance_to_other_class(disc)  # 1 for a pixel next to the boundary
    for width in (1, 3, 6, 10):
        trimap = data.mask_trimap(disc, width)
        unknown = trimap == 128
        assert np.all(distance[~unknown] > width) and np.all(distance[unknown] < width + 1)
        assert np.array_equal(trimap[~unknown], disc[~unknown])  # known regions are exactly the mask


def test_mask_trimap_thresholds_soft_masks_at_128():
    mask = np.tile(np.array([0, 90, 127, 128, 200, 255], np.uint8), (7, 1))  # columns of each value
    trimap = data.mask_trimap(np.repeat(mask, 9, axis=1), 2)
    assert trimap[0, 0] == 0 and trimap[0, -1] == 255
    unknown_columns = np.unique(np.nonzero(trimap == 128)[1])
    assert np.array_equal(unknown_columns, np.arange(27 - 2, 27 + 2))  # boundary between 127 and 128


def test_band_pixels_in_pixels_or_percent_of_the_longer_side():
    assert data.band_pixels(20, (600, 800)) == 20 and data.band_pixels('7', (10, 10, 3)) == 7
    assert data.band_pixels('2%', (600, 800)) == 16 and data.band_pixels('2%', (1600, 1200)) == 32
    assert data.band_pixels('0.01%', (50, 50)) == 1  # never a band of no pixels
    for bad in ('abc', '0', '-3', '2.5', '%', '0%'):
        with pytest.raises(ValueError, match='band'):
            data.band_pixels(bad, (100, 100))
    # a relative band scales with the image: the same mask at twice the size gets twice the band
    mask = np.zeros((50, 80), np.uint8)
    mask[:, :40] = 255
    big = cv2.resize(mask, (160, 100), interpolation=cv2.INTER_NEAREST)
    small_band = (data.mask_trimap(mask, data.band_pixels('5%', mask.shape)) == 128).sum(axis=1)
    big_band = (data.mask_trimap(big, data.band_pixels('5%', big.shape)) == 128).sum(axis=1)
    assert small_band[0] == 8 and big_band[0] == 16


def test_write_png_keeps_the_alpha_channel_of_rgba(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    data.write_png(str(tmp_path / 'a.png'), rgba)
    bgra = cv2.imread(str(tmp_path / 'a.png'), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(bgra, rgba[:, :, [2, 1, 0, 3]])
    assert np.array_equal(data.read_image(str(tmp_path / 'a.png')), rgba[:, :, :3])


def test_random_trimap_erodes_the_foreground_by_k_erode_and_dilates_it_by_k_dilate():
    alpha = np.zeros((40, 60), np.uint8)
    alpha[:, 30:] = 255  # a hard vertical edge between columns 29 and 30
    unknown_columns = lambda trimap: np.flatnonzero((trimap == 128).all(axis=0)).tolist()
    # eroded by a 21-pixel ellipse (it reaches 10 pixels): the unknown band is the foreground's first 10 columns
    assert unknown_columns(data.random_trimap(alpha, 21, 1)) == list(range(30, 40))
    # and dilated by a 21-pixel ellipse, 10 columns into the background
    assert unknown_columns(data.random_trimap(alpha, 1, 21)) == list(range(20, 30))
    trimap = data.random_trimap(alpha, 21, 1)
    assert (trimap[:, :30] == 0).all() and (trimap[:, 40:] == 255).all()


def test_first_per_foreground_keeps_the_first_k_of_each_in_order():
    entries = [dict(name=n, fg=fg) for n, fg in [('a0', 'a'), ('b0', 'b'), ('a1', 'a'), ('a2', 'a'), ('b1', 'b'),
                                                 ('b2', 'b'), ('c0', 'c')]]
    assert [e['name'] for e in data.first_per_foreground(entries, 2)] == ['a0', 'b0', 'a1', 'b1', 'c0']
    assert data.first_per_foreground(entries, 1) == [entries[0], entries[1], entries[6]]
