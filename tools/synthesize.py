"""Generate a synthetic matting dataset with the hard cases of real matting, from nothing.

Foregrounds are compositions of primitives on a transparent canvas. Like Composition-1k's, seven in ten are
opaque subjects (bodies with anti-aliased edges, sometimes holes, hair and fur: thin curved strands drawn
supersampled, so their alpha is fractional) and the rest transparent (glass, veils, smoke, nets and lace).
Bodies are textured with generated colour fields, or with photographs (--photo_dir: a folder, or
scikit-image's bundled ones). Backgrounds are generated (noise, gradients, shapes, stripes, wires, blur), cut
from those photographs, or copied whole from a folder (--bg_dir). The output has the layout of the Adobe set that
tools/composite.py reads:

    OUT/train/{fg,alpha,bg}/  OUT/train/fg_names.txt  OUT/train/bg_names.txt  (num_bg bg names per fg)
    OUT/test/{fg,alpha,bg,trimap}/  OUT/test/fg_names.txt  OUT/test/bg_names.txt

Test trimaps are benchmark-style (data.band_trimap). Every item is drawn from its own generator
seeded with (seed, split, stream, index), so the files do not depend on --workers.

    python tools/synthesize.py --out data/synth
"""
import argparse
import functools
import multiprocessing
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import data  # noqa: E402

SPLITS = {'train': 0, 'test': 1}
FG_STREAM, BG_STREAM, PHOTO_STREAM = 0, 1, 2
# Foreground i mainly shows KINDS[i % 10]: like Composition-1k, mostly opaque subjects whose hair, fur, holes
# and edges make a fractional band along the boundary (7 in 10), and a minority of transparent ones.
KINDS = ('hair', 'fur', 'solid', 'glass', 'hair', 'fur', 'net', 'solid', 'hair', 'smoke')
OPAQUE_KINDS = ('hair', 'fur', 'solid')
# Colour photographs bundled with scikit-image (public domain or CC0 per skimage.data, except the Middlebury
# motorcycle), used as textures and backgrounds by --photo_dir skimage when scikit-image is installed.
SKIMAGE_PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'hubble_deep_field.jpg', 'ihc.png',
                  'motorcycle_left.png', 'motorcycle_right.png', 'retina.jpg', 'rocket.jpg')
SS_SHAPE = 4  # supersampling of solid shapes
SS_FINE = 8  # supersampling of strands and nets
HAIR_COLORS = np.array([(25, 20, 18), (60, 40, 28), (110, 75, 45), (140, 70, 40), (200, 170, 120),
                        (225, 215, 190), (150, 150, 150), (235, 235, 230), (200, 120, 50)], np.float32)


# ----------------------------------------------------------------------------------------------
# Noise and colour


def smooth_noise(rng, h, w, cell, octaves=4, persistence=0.5):
    """Multi-scale value noise, H x W float32 with zero mean and unit std: random grids with
    `cell` px spacing (halved each octave), bicubic-upscaled and summed."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for _ in range(octaves):
        cell = max(cell, 1.0)
        gh, gw = int(h / cell) + 3, int(w / cell) + 3
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        up = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
        out += amp * up[:h, :w]
        amp *= persistence
        cell /= 2
    return (out - out.mean()) / (out.std() + 1e-6)


def random_color(rng):
    """An RGB colour (float32 x 3) drawn in HSV so that greys, pastels and strong colours all occur."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0.05, 0.9) * 255, rng.uniform(0.12, 0.95) * 255]]])
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def color_field(rng, h, w, base):
    """H x W x 3 float32 texture around `base`: noise-modulated, plus a gradient or stripes."""
    base = np.asarray(base, np.float32)
    size = max(h, w)
    noise = smooth_noise(rng, h, w, rng.uniform(0.01, 0.3) * size, octaves=int(rng.integers(2, 6)))
    tint = 1 + 0.3 * rng.standard_normal(3).astype(np.float32)
    field = base + noise[:, :, None] * (rng.uniform(6, 35) * tint)
    style = rng.integers(3)
    if style > 0:
        other = np.clip(base + rng.normal(0, 60, 3), 0, 255).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (x * np.cos(angle) + y * np.sin(angle)) / size
        if style == 1:  # gradient
            mix = np.clip(t - t.min(), 0, 1) * rng.uniform(0.3, 1)
        else:  # stripes, slightly warped
            period = rng.uniform(0.01, 0.08)
            warp = 0.02 * smooth_noise(rng, h, w, 0.2 * size, octaves=2)
            mix = 0.5 + 0.5 * np.sin(2 * np.pi * (t + warp) / period)
            mix *= rng.uniform(0.3, 0.9)
        field = field * (1 - mix[:, :, None]) + other * mix[:, :, None]
    return np.clip(field, 0, 255).astype(np.float32)


@functools.lru_cache(maxsize=4)
def load_photo(path):
    return data.read_image(path).astype(np.float32)


def photo_crop(rng, path, h, w):
    """An h x w float32 window of the photograph at `path`, at a random zoom (1 to 3 times the scale at
    which the photograph just covers h x w), flipped at random."""
    photo = load_photo(path)
    ph, pw = photo.shape[:2]
    scale = max(h / ph, w / pw) * np.exp(rng.uniform(0, np.log(3)))  # output px per photo px
    sh, sw = min(ph, h / scale), min(pw, w / scale)  # the window in photo px
    y, x = rng.uniform(0, ph - sh), rng.uniform(0, pw - sw)
    window = photo[int(y):int(np.ceil(y + sh)), int(x):int(np.ceil(x + sw))]
    out = cv2.resize(window, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def texture(rng, h, w, base, photos):
    """The colour of a layer: a photograph's texture (7 times in 10 when `photos` is not empty), colour-jittered,
    or a generated field around `base` (`color_field`)."""
    if photos and rng.random() < 0.7:
        field = photo_crop(rng, photos[rng.integers(len(photos))], h, w)
        field = field * (1 + 0.15 * rng.standard_normal(3)) + rng.normal(0, 12, 3)
        return np.clip(field, 0, 255).astype(np.float32)
    return color_field(rng, h, w, base)


# ----------------------------------------------------------------------------------------------
# Drawing at a higher resolution


def to_ss(points, ss):
    """Final-scale (x, y) points -> int32 coordinates of an `ss` times larger canvas, with 3
    fractional bits (pass shift=3 to cv2)."""
    return np.round(((np.asarray(points, np.float32) + 0.5) * ss - 0.5) * 8).astype(np.int32)


def reduce(canvas, h, w):
    """An ss-times larger uint8 canvas -> H x W float32 alpha in [0, 1] (area average)."""
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def blob(rng, cx, cy, rx, ry, wobble, n=120):
    """Closed smooth outline (n x 2 points): an ellipse with a random radial wobble, rotated."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 8):
        r += wobble * rng.normal() / k * np.sin(k * t + rng.uniform(0, 2 * np.pi))
    r = np.maximum(r, 0.2)
    x, y = rx * r * np.cos(t), ry * r * np.sin(t)
    a = rng.uniform(0, 2 * np.pi)
    return np.stack([cx + x * np.cos(a) - y * np.sin(a), cy + x * np.sin(a) + y * np.cos(a)], 1)


def star_polygon(rng, cx, cy, r):
    """A polygon with 3-9 sharp corners (star-shaped around its centre)."""
    n = int(rng.integers(3, 10))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = r * rng.uniform(0.5, 1.0, n)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)


def fill(canvas, polygon, ss, value=255):
    cv2.fillPoly(canvas, [to_ss(polygon, ss)], value, cv2.LINE_AA, shift=3)


# ----------------------------------------------------------------------------------------------
# Foreground primitives: each returns an alpha (H x W float32 in [0, 1]), some also a colour.


def solid_body(rng, h, w, holes):
    """A solid object: union of a wobbly blob with smaller blobs / sharp polygons, sometimes
    continuing out of the bottom edge (like a bust), optionally with holes through it."""
    s = min(h, w)
    canvas = np.zeros((h * SS_SHAPE, w * SS_SHAPE), np.uint8)
    cx, cy = w * rng.uniform(0.38, 0.62), h * rng.uniform(0.35, 0.6)
    r = s * rng.uniform(0.2, 0.32)
    fill(canvas, blob(rng, cx, cy, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.3),
                      rng.uniform(0.05, 0.4)), SS_SHAPE)
    for _ in range(rng.integers(0, 4)):
        a, d = rng.uniform(0, 2 * np.pi), r * rng.uniform(0.6, 1.1)
        px, py, pr = cx + d * np.cos(a), cy + d * np.sin(a), r * rng.uniform(0.25, 0.6)
        shape = (star_polygon(rng, px, py, pr) if rng.random() < 0.5
                 else blob(rng, px, py, pr, pr * rng.uniform(0.4, 1), rng.uniform(0, 0.3)))
        fill(canvas, shape, SS_SHAPE)
    if rng.random() < 0.4:  # shoulders: the object is cut by the bottom edge
        top, half = cy + r * 0.6, r * rng.uniform(1.2, 2.2)
        fill(canvas, np.array([(cx - half * 0.5, top), (cx + half * 0.5, top),
                               (cx + half, h + 10), (cx - half, h + 10)]), SS_SHAPE)
    alpha = reduce(canvas, h, w)
    if holes:
        inside = cv2.distanceTransform((alpha > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
        for _ in range(rng.integers(1, 6)):
            hr = s * rng.uniform(0.015, 0.06)
            ys, xs = np.nonzero(inside > hr * 1.6)
            if len(ys) == 0:
                break
            k = rng.integers(len(ys))
            fill(canvas, blob(rng, xs[k], ys[k], hr, hr * rng.uniform(0.4, 1), rng.uniform(0, 0.3), n=48),
                 SS_SHAPE, 0)
        alpha = reduce(canvas, h, w)
    return alpha


def boundary(body):
    """Points (x, y) on the outer boundary of `body` away from the image border, and the angle of
    the outward normal at each."""
    h, w = body.shape
    contours, _ = cv2.findContours((body > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    pts = np.concatenate([c[:, 0, :] for c in contours]).astype(np.float32)
    keep = (pts[:, 0] > 3) & (pts[:, 0] < w - 4) & (pts[:, 1] > 3) & (pts[:, 1] < h - 4)
    pts = pts[keep]
    smooth = cv2.GaussianBlur(body, (0, 0), 4)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=5)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=5)
    xi, yi = pts[:, 0].astype(int), pts[:, 1].astype(int)
    return pts, np.arctan2(-gy[yi, xi], -gx[yi, xi])


def strands(rng, h, w, roots, angles, lengths, widths, bends, wiggle, wave=(0.0, 1.0), pull=None,
            pull_strength=0.0):
    """Alpha of curved strands (hair, fur) drawn at SS_FINE x and reduced.

    Strand i starts at roots[i] with angles[i], bends by bends[i] radians per px, plus a random walk
    (`wiggle` radians per sqrt px) and a wave shared by all strands (amplitude in radians, period
    in px); it optionally turns towards the direction `pull` (gravity, wind) and tapers from
    widths[i] (final-scale px, may be < 1) to about a third at its tip."""
    canvas = np.zeros((h * SS_FINE, w * SS_FINE), np.uint8)
    pull_vec = None if pull is None else np.array([np.cos(pull), np.sin(pull)])
    for root, angle, length, width, bend in zip(roots, angles, lengths, widths, bends):
        n = max(4, int(length / 1.5))
        step = length / n
        s = np.arange(n) * step  # arc length
        theta = (angle + bend * s + wave[0] * np.sin(2 * np.pi * s / wave[1])
                 + np.cumsum(rng.normal(0, wiggle * np.sqrt(step), n)))
        d = np.stack([np.cos(theta), np.sin(theta)], 1)
        if pull_vec is not None:
            t = (s / length * pull_strength)[:, None]
            d = d * (1 - t) + pull_vec * t
            d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
        pts = to_ss(np.concatenate([root[None], root + np.cumsum(d * step, 0)]), SS_FINE)
        cuts = [0, n // 2, 3 * n // 4, n]
        for i, taper in enumerate((1.0, 0.7, 0.4)):
            thickness = max(1, int(round(width * taper * SS_FINE)))
            cv2.polylines(canvas, [pts[cuts[i]:cuts[i + 1] + 1]], False, 255, thickness, cv2.LINE_AA, shift=3)
    return reduce(canvas, h, w)


def hair(rng, body, style):
    """Strands growing from the boundary of `body`: 'hair' (long, from one side, combed by a
    shared bend, wave and gravity), 'fur' (short and dense all around) or 'flyaway' (a few long,
    very thin, curved ones in all directions)."""
    h, w = body.shape
    size = max(h, w)
    pts, normal = boundary(body)
    if len(pts) == 0:
        return np.zeros((h, w), np.float32)
    pull, pull_strength, wave = None, 0.0, (0.0, 1.0)
    if style == 'hair':
        up = -np.pi / 2 + rng.normal(0, 0.5)
        near = np.abs(np.angle(np.exp(1j * (normal - up)))) < rng.uniform(1.0, 2.2)
        if near.any():
            pts, normal = pts[near], normal[near]
        n = int(rng.integers(300, 1100))
        lengths = size * rng.uniform(0.08, 0.4, n)
        widths = np.exp(rng.uniform(np.log(0.3), np.log(1.6), n))
        bends = rng.normal(0, 0.003) + rng.normal(0, 0.002, n)
        wiggle = rng.uniform(0.005, 0.04)
        wave = (rng.uniform(0, 0.6) * (rng.random() < 0.5), size * rng.uniform(0.05, 0.2))
        pull, pull_strength = np.pi / 2 + rng.normal(0, 0.6), rng.uniform(0.2, 0.9)
        jitter, inward = 0.25, size * rng.uniform(0.0, 0.04, n)
    elif style == 'fur':
        n = int(len(pts) * rng.uniform(0.6, 1.8))
        lengths = size * np.exp(rng.normal(np.log(rng.uniform(0.015, 0.05)), 0.35, n))
        widths = rng.uniform(0.4, 1.3, n)
        bends = rng.normal(0, 0.01) + rng.normal(0, 0.01, n)
        wiggle = rng.uniform(0.01, 0.05)
        pull, pull_strength = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.5)
        jitter, inward = 0.35, lengths * rng.uniform(0.2, 0.5, n)
    else:  # flyaway
        n = int(rng.integers(10, 60))
        lengths = size * rng.uniform(0.08, 0.35, n)
        widths = rng.uniform(0.3, 0.7, n)
        bends = rng.normal(0, 0.012, n)
        wiggle = rng.uniform(0.01, 0.05)
        jitter, inward = 0.6, size * rng.uniform(0.0, 0.02, n)
    pick = rng.integers(len(pts), size=n)
    angles = normal[pick] + rng.normal(0, jitter, n)
    outward = np.stack([np.cos(angles), np.sin(angles)], 1)
    roots = pts[pick] + rng.uniform(-1, 1, (n, 2)) - outward * np.asarray(inward, np.float32).reshape(-1, 1)
    return strands(rng, h, w, roots, angles, lengths, widths, bends, wiggle, wave, pull, pull_strength)


def veil(rng, h, w):
    """A thin fabric: a large soft-edged region with alpha 0.2-0.7, modulated by folds and noise."""
    size = max(h, w)
    canvas = np.zeros((h * SS_SHAPE, w * SS_SHAPE), np.uint8)
    fill(canvas, blob(rng, w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7), w * rng.uniform(0.2, 0.45),
                      h * rng.uniform(0.2, 0.45), rng.uniform(0.05, 0.3)), SS_SHAPE)
    shape = reduce(canvas, h, w)
    if rng.random() < 0.6:
        shape = cv2.GaussianBlur(shape, (0, 0), rng.uniform(0.5, 3))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, np.pi)
    folds = np.sin(2 * np.pi * ((x * np.cos(a) + y * np.sin(a)) / (size * rng.uniform(0.03, 0.15))
                                + 0.3 * smooth_noise(rng, h, w, size * 0.3, octaves=2)))
    density = rng.uniform(0.2, 0.7) * (1 + 0.2 * folds + 0.15 * smooth_noise(rng, h, w, size * 0.2, octaves=3))
    return shape * np.clip(density, 0.05, 0.95)


def glass(rng, h, w):
    """A glass object: faint interior, denser rim, a bright highlight. Returns (alpha, highlight)."""
    s = min(h, w)
    canvas = np.zeros((h * SS_SHAPE, w * SS_SHAPE), np.uint8)
    cx, cy, r = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65), s * rng.uniform(0.2, 0.35)
    fill(canvas, blob(rng, cx, cy, r * rng.uniform(0.5, 1), r, rng.uniform(0, 0.15)), SS_SHAPE)
    shape = reduce(canvas, h, w)
    depth = cv2.distanceTransform((shape > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    rim = np.exp(-depth / (r * rng.uniform(0.04, 0.15)))
    a_in, a_rim = rng.uniform(0.06, 0.3), rng.uniform(0.5, 0.9)
    alpha = shape * (a_in + (a_rim - a_in) * rim)
    canvas[:] = 0
    hx, hy = cx + r * rng.uniform(-0.5, 0.5), cy + r * rng.uniform(-0.5, 0.5)
    fill(canvas, blob(rng, hx, hy, r * rng.uniform(0.05, 0.15), r * rng.uniform(0.3, 0.6), 0.1), SS_SHAPE)
    highlight = cv2.GaussianBlur(reduce(canvas, h, w), (0, 0), rng.uniform(0.5, 2)) * shape
    return np.maximum(alpha, rng.uniform(0.7, 0.95) * highlight), highlight


def smoke(rng, h, w):
    """Smoke or mist: thresholded multi-scale noise inside a ragged plume that falls to exactly 0."""
    size = max(h, w)
    noise = smooth_noise(rng, h, w, size * rng.uniform(0.08, 0.3), octaves=5, persistence=0.55)
    density = 1 / (1 + np.exp(-(noise - rng.uniform(-0.8, 0.6)) * rng.uniform(1.5, 4)))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, rx, ry = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7), w * rng.uniform(0.25, 0.5), h * rng.uniform(
        0.25, 0.5)
    ragged = 0.35 * smooth_noise(rng, h, w, size * rng.uniform(0.05, 0.15), octaves=3)
    plume = np.clip(1 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2 + ragged, 0, 1) ** rng.uniform(0.4, 1.5)
    alpha = rng.uniform(0.5, 1.0) * density * plume
    return cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), rng.uniform(0.5, 2.5))


def net(rng, h, w):
    """A net (two families of thin lines) or lace (a sheet with a lattice of round holes) inside
    a region, sometimes with a solid frame, warped like fabric."""
    s = min(h, w)
    canvas = np.zeros((h * SS_FINE, w * SS_FINE), np.uint8)
    region = blob(rng, w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65), w * rng.uniform(0.25, 0.45),
                  h * rng.uniform(0.25, 0.45), rng.uniform(0, 0.25))
    fill(canvas, region, SS_FINE)
    period = s * rng.uniform(0.015, 0.05)
    diag = float(np.hypot(h, w))
    if rng.random() < 0.6:  # net
        lines = np.zeros_like(canvas)
        width = rng.uniform(0.35, 1.5)
        a0 = rng.uniform(0, np.pi)
        for a in (a0, a0 + rng.uniform(np.pi / 4, np.pi / 2)):
            d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
            for off in np.arange(-diag, diag, period):
                c = np.array([w / 2, h / 2]) + n * off
                cv2.line(lines, *[tuple(int(v) for v in p) for p in to_ss([c - d * diag, c + d * diag], SS_FINE)],
                         255, max(1, int(round(width * SS_FINE))), cv2.LINE_AA, shift=3)
        canvas = cv2.bitwise_and(canvas, lines)
    else:  # lace
        radius = period * rng.uniform(0.3, 0.45)
        ys = np.arange(-period, h + period, period * np.sqrt(3) / 2)
        for row, yy in enumerate(ys):
            for xx in np.arange(-period, w + period, period) + (period / 2) * (row % 2):
                c = to_ss([(xx, yy) + rng.normal(0, 0.05 * period, 2)], SS_FINE)[0]
                r = int(radius * rng.uniform(0.8, 1.1) * SS_FINE * 8)
                cv2.circle(canvas, (int(c[0]), int(c[1])), r, 0, -1, cv2.LINE_AA, shift=3)
    if rng.random() < 0.5:  # frame
        cv2.polylines(canvas, [to_ss(region, SS_FINE)], True, 255, int(rng.uniform(1.5, 5) * SS_FINE), cv2.LINE_AA,
                      shift=3)
    alpha = reduce(canvas, h, w)
    amp = period * rng.uniform(0, 0.8)
    if amp > 0.1:
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        map_x = x + amp * smooth_noise(rng, h, w, s * 0.25, octaves=2)
        map_y = y + amp * smooth_noise(rng, h, w, s * 0.25, octaves=2)
        alpha = cv2.remap(alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return alpha


def motion_kernel(rng, length):
    """A normalised linear blur kernel of `length` px at a random angle (anti-aliased)."""
    ks = 2 * int(np.ceil(length / 2)) + 1
    big = np.zeros((ks * 4, ks * 4), np.uint8)
    a = rng.uniform(0, np.pi)
    c, d = np.array([ks * 2, ks * 2]) - 0.5, np.array([np.cos(a), np.sin(a)]) * length * 2
    cv2.line(big, tuple(int(v) for v in np.round((c - d) * 8)), tuple(int(v) for v in np.round((c + d) * 8)), 255, 4,
             cv2.LINE_AA, shift=3)
    kernel = cv2.resize(big, (ks, ks), interpolation=cv2.INTER_AREA).astype(np.float32)
    return kernel / kernel.sum()


# ----------------------------------------------------------------------------------------------
# Items


def fg_size(rng, size):
    """(h, w) of a foreground: exactly `size` = (H, W), or the longer side `size` = (S,) with a
    random aspect ratio, portrait more often than landscape."""
    if len(size) == 2:
        return size[0], size[1]
    long, short = size[0], int(round(size[0] * rng.uniform(0.7, 1.0)))
    return (long, short) if rng.random() < 0.6 else (short, long)


def make_foreground(rng, h, w, kind, near_color=None, photos=()):
    """One foreground of the given kind (see KINDS) -> (fg uint8 H x W x 3, alpha uint8 H x W).
    `photos`: paths of photographs for the textures of its bodies (`texture`).

    Layers (alpha, colour) are stacked with the over operator; the colour of the result is the
    un-premultiplied stack, extended by the bottom layer's colour where alpha is 0."""
    layers = []
    close = near_color is not None and rng.random() < 0.3  # camouflage: colours near the background's
    pick = (lambda: np.clip(near_color + rng.normal(0, 12, 3), 0, 255)) if close else (lambda: random_color(rng))

    body = None
    if kind in ('hair', 'fur', 'solid') or rng.random() < 0.4:
        body = solid_body(rng, h, w, holes=rng.random() < (0.7 if kind == 'solid' else 0.15))
        if rng.random() < 0.15:  # out of focus
            body = cv2.GaussianBlur(body, (0, 0), rng.uniform(0.7, 2))
        layers.append((body, color_field(rng, h, w, pick()) if close else texture(rng, h, w, pick(), photos)))
    if kind == 'smoke':
        grey = rng.uniform(90, 240) + rng.normal(0, 12, 3) if not close else pick()
        layer = (smoke(rng, h, w), color_field(rng, h, w, grey))
        layers.insert(0 if rng.random() < 0.4 else len(layers), layer)
    if body is not None and kind in ('hair', 'fur'):
        if close:
            hair_color = pick()
        elif kind == 'fur' and rng.random() < 0.5:  # fur of the body's colour
            hair_color = np.clip(layers[-1][1].mean((0, 1)) * rng.uniform(0.7, 1.3), 0, 255)
        else:
            hair_color = HAIR_COLORS[rng.integers(len(HAIR_COLORS))] + rng.normal(0, 10, 3)
        strands_alpha = hair(rng, body, kind)
        if rng.random() < 0.7:
            strands_alpha = np.maximum(strands_alpha, hair(rng, body, 'flyaway'))
        layers.append((strands_alpha * rng.uniform(0.85, 1.0), color_field(rng, h, w, hair_color)))
    elif body is not None and rng.random() < 0.2:
        layers.append((hair(rng, body, 'flyaway'), color_field(rng, h, w, pick())))
    if kind == 'net':
        layers.append((net(rng, h, w), color_field(rng, h, w, pick())))
    if kind == 'glass':
        if rng.random() < 0.6:
            alpha, highlight = glass(rng, h, w)
            tint = color_field(rng, h, w, np.clip(random_color(rng) * 0.5 + 110, 0, 255))
            layers.append((alpha, tint * (1 - highlight[:, :, None]) + 245 * highlight[:, :, None]))
        else:
            layers.append((veil(rng, h, w), color_field(rng, h, w, random_color(rng) * 0.4 + 140)))
    elif rng.random() < (0.05 if kind in OPAQUE_KINDS else 0.15):
        layers.append((veil(rng, h, w), color_field(rng, h, w, random_color(rng) * 0.4 + 140)))

    total = np.zeros((h, w), np.float32)
    premult = np.zeros((h, w, 3), np.float32)
    for alpha, color in layers:
        premult = alpha[:, :, None] * color + (1 - alpha[:, :, None]) * premult
        total = alpha + (1 - alpha) * total
    if rng.random() < 0.12:
        kernel = motion_kernel(rng, max(h, w) * rng.uniform(0.008, 0.05))
        premult = cv2.filter2D(premult, -1, kernel, borderType=cv2.BORDER_REPLICATE)
        total = cv2.filter2D(total, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    seen = total > 1e-4
    fg = np.array(layers[0][1])
    fg[seen] = premult[seen] / total[seen][:, None]
    alpha8 = np.round(np.clip(total, 0, 1) * 255).astype(np.uint8)
    return np.round(np.clip(fg, 0, 255)).astype(np.uint8), alpha8


def bg_size(rng, size):
    """A background sometimes larger and sometimes smaller than the foregrounds (so that the
    dataset's upscale rule is exercised), landscape more often than portrait."""
    base = max(size)
    long = int(round(base * rng.uniform(0.6, 1.8)))
    short = int(round(long * rng.uniform(0.6, 1.0)))
    return (short, long) if rng.random() < 0.65 else (long, short)


def make_background(rng, h, w):
    """A generated background: gradient, multi-scale colour noise, shapes (partly defocused),
    stripes, thin wires and branches, grain."""
    size = max(h, w)
    image = color_field(rng, h, w, random_color(rng))
    image += smooth_noise(rng, h, w, size * rng.uniform(0.05, 0.5), octaves=5)[:, :, None] * rng.uniform(5, 30)
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    n_shapes = int(rng.integers(3, 30))
    for i in range(n_shapes):
        color = tuple(int(v) for v in random_color(rng))
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), size * np.exp(rng.uniform(np.log(0.01), np.log(0.25)))
        shape = rng.integers(4)
        if shape == 0:
            cv2.fillPoly(canvas, [to_ss(blob(rng, cx, cy, r, r * rng.uniform(0.3, 1), rng.uniform(0, 0.4)), 1)],
                         color, cv2.LINE_AA, shift=3)
        elif shape == 1:
            cv2.fillPoly(canvas, [to_ss(star_polygon(rng, cx, cy, r), 1)], color, cv2.LINE_AA, shift=3)
        elif shape == 2:
            cv2.rectangle(canvas, (int(cx - r), int(cy - r * rng.uniform(0.2, 1))), (int(cx + r), int(cy + r)),
                          color, -1 if rng.random() < 0.7 else int(rng.integers(1, 6)))
        else:
            cv2.circle(canvas, (int(cx), int(cy)), int(r), color, -1 if rng.random() < 0.6 else int(rng.integers(1, 6)),
                       cv2.LINE_AA)
        if i == n_shapes // 2 and rng.random() < 0.6:  # what is drawn so far is out of focus
            canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(1, 6))
    if rng.random() < 0.3:  # stripes in a region
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 30)
        stripes = (np.sin(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / period) > 0).astype(np.float32)
        region = np.zeros((h, w), np.uint8)
        cv2.fillPoly(region, [to_ss(star_polygon(rng, rng.uniform(0, w), rng.uniform(0, h), size * 0.4), 1)],
                     1, cv2.LINE_AA, shift=3)
        mix = (stripes * region * rng.uniform(0.3, 0.8))[:, :, None]
        canvas = (canvas * (1 - mix) + random_color(rng) * mix).astype(np.uint8)
    for _ in range(rng.integers(0, 12)):  # wires and branches: thin edges a matting net must ignore
        n = int(rng.integers(10, 60))
        theta = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, n))
        step = size * rng.uniform(0.005, 0.03)
        pts = np.array([rng.uniform(0, w), rng.uniform(0, h)]) + np.cumsum(
            np.stack([np.cos(theta), np.sin(theta)], 1) * step, 0)
        color = tuple(int(v) for v in random_color(rng) * rng.uniform(0.2, 1))
        cv2.polylines(canvas, [to_ss(pts, 1)], False, color, int(rng.integers(1, 4)), cv2.LINE_AA, shift=3)
    if rng.random() < 0.5:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 2.5))
    grain = rng.normal(0, rng.uniform(0.5, 3), (h, w, 1)).astype(np.float32)
    return np.clip(canvas + grain, 0, 255).astype(np.uint8)


def photo_background(rng, path, h, w):
    """A background cut from a photograph (`photo_crop`), often out of focus, with sensor grain."""
    image = photo_crop(rng, path, h, w)
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 4))
    grain = rng.normal(0, rng.uniform(0.5, 3), (h, w, 1)).astype(np.float32)
    return np.clip(np.round(image + grain), 0, 255).astype(np.uint8)


def run_task(task):
    """Make and write one item (a background, a copied photo, or a foreground with its alpha and,
    for the test split, its trimap). Returns what the caller needs: a mean colour, or counts."""
    kind = task['kind']
    if kind == 'photo':
        image = data.read_image(task['src'])  # checks that the file is readable
        tmp = f"{task['dst']}.{os.getpid()}.tmp"
        shutil.copyfile(task['src'], tmp)
        os.replace(tmp, task['dst'])
        return {'mean': image.reshape(-1, 3).mean(0)}
    split = SPLITS[task['split']]
    if kind == 'bg':
        rng = np.random.default_rng([task['seed'], split, BG_STREAM, task['index']])
        h, w = bg_size(rng, task['size'])
        photos = task['photos']
        image = photo_background(rng, photos[rng.integers(len(photos))], h, w) \
            if photos and rng.random() < 0.7 else make_background(rng, h, w)
        data.write_png(task['dst'], image)
        return {'mean': image.reshape(-1, 3).mean(0)}
    rng = np.random.default_rng([task['seed'], split, FG_STREAM, task['index']])
    h, w = fg_size(rng, task['size'])
    fg, alpha = make_foreground(rng, h, w, KINDS[task['index'] % len(KINDS)], task['near_color'], task['photos'])
    data.write_png(task['fg'], fg)
    data.write_png(task['alpha'], alpha)
    result = {'fractional': int(((alpha > 0) & (alpha < 255)).sum()), 'pixels': alpha.size}
    if task.get('trimap'):
        trimap = data.band_trimap(alpha, task['trimap_width'])
        data.write_png(task['trimap'], trimap)
        unknown = trimap == 128
        result.update(unknown=int(unknown.sum()), unknown_fractional=int((unknown & (alpha > 0) & (alpha < 255)).sum()))
    return result


def _init_worker():
    cv2.setNumThreads(1)  # the processes already use the cores


def run_all(tasks, workers, desc):
    """Results of run_task over `tasks`, in order, in `workers` processes."""
    bar = tqdm(total=len(tasks), desc=desc, unit='item', leave=False, disable=None)
    try:
        if workers <= 1:
            results = []
            for task in tasks:
                results.append(run_task(task))
                bar.update()
            return results
        with multiprocessing.get_context('spawn').Pool(workers, initializer=_init_worker) as pool:
            results = []
            for result in pool.imap(run_task, tasks):
                results.append(result)
                bar.update()
            return results
    finally:
        bar.close()


# ----------------------------------------------------------------------------------------------
# Contact sheet


def _panel(image, cell, label):
    """Fit an image (H x W or H x W x 3 uint8) into a cell x cell grey square, with a label."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, 2)
    h, w = image.shape[:2]
    scale = cell / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
    out = np.full((cell, cell, 3), 64, np.uint8)
    y0, x0 = (cell - nh) // 2, (cell - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    cv2.putText(out, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(root, names, bg_names, num_bg, cell=220):
    """Rows of test samples: composite on the first background, alpha, trimap, and a zoom of the
    composite and the alpha where the alpha has the most detail (sum of gradient magnitudes)."""
    rows = []
    for i, name in enumerate(names):
        fg = data.read_image(os.path.join(root, 'fg', name))
        alpha = data.read_gray(os.path.join(root, 'alpha', name))
        trimap = data.read_gray(os.path.join(root, 'trimap', name))
        h, w = alpha.shape
        bg = data.fit_background(data.read_image(os.path.join(root, 'bg', bg_names[i * num_bg])), h, w)
        image = data.compose(fg, bg, alpha).astype(np.uint8)
        side = max(8, min(h, w) // 5)
        a = alpha.astype(np.float32)
        detail = np.abs(cv2.Sobel(a, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(a, cv2.CV_32F, 0, 1))
        density = cv2.boxFilter(detail, -1, (side, side))
        cy, cx = np.unravel_index(np.argmax(density), density.shape)
        y0, x0 = int(np.clip(cy - side // 2, 0, h - side)), int(np.clip(cx - side // 2, 0, w - side))
        crop = (slice(y0, y0 + side), slice(x0, x0 + side))
        rows.append(np.concatenate([
            _panel(image, cell, f'{name}  {w}x{h}'), _panel(alpha, cell, 'alpha'), _panel(trimap, cell, 'trimap'),
            _panel(image[crop], cell, f'zoom {cell / side:.1f}x'), _panel(alpha[crop], cell, 'zoom alpha')], 1))
    return np.concatenate(rows, 0)


# ----------------------------------------------------------------------------------------------


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', default='data/synth', help='output root (train/ and test/ are made inside)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num_train_fg', type=int, default=32, help='training foregrounds')
    parser.add_argument('--num_test_fg', type=int, default=10, help='test foregrounds')
    parser.add_argument('--num_bg', type=int, default=4, help='backgrounds per training foreground')
    parser.add_argument('--num_test_bg', type=int, default=2, help='backgrounds per test foreground')
    parser.add_argument('--size', type=int, nargs='+', default=[512],
                        help='foreground size: S (longer side, random aspect) or H W')
    parser.add_argument('--bg_dir', default=None,
                        help='folder of photographs to use as backgrounds instead of generated ones '
                             '(split between train and test, copied into OUT)')
    parser.add_argument('--photo_dir', default='none',
                        help="photographs for foreground textures and generated backgrounds: a folder, 'skimage' "
                             "(scikit-image's bundled colour photographs, if it is installed) or 'none' "
                             "(procedural textures only, which trained better: README); a quarter of the "
                             "photographs (one or two) is kept for the test split")
    parser.add_argument('--trimap_width', type=int, default=None,
                        help='unknown band of the test trimaps in px; None: 10 per 512 px of --size')
    parser.add_argument('--workers', type=int, default=min(os.cpu_count() or 1, 8), help='processes')
    parser.add_argument('--sheet', default=None,
                        help="contact sheet PNG; None: OUT/contact_sheet.png, '' for none")
    parser.add_argument('--sheet_rows', type=int, default=6, help='test samples on the contact sheet')
    return parser


def list_photos(photo_dir):
    """Paths of the texture photographs `--photo_dir` names (see its help); [] for 'none'."""
    if photo_dir == 'none':
        return []
    if photo_dir == 'skimage':
        try:
            import skimage.data
        except ImportError:
            print("note: scikit-image is not installed: procedural textures only (pip install scikit-image, "
                  "or --photo_dir FOLDER)", file=sys.stderr)
            return []
        folder = os.path.dirname(skimage.data.__file__)
        return [os.path.join(folder, name) for name in SKIMAGE_PHOTOS if os.path.isfile(os.path.join(folder, name))]
    return [os.path.join(photo_dir, name) for name in data.list_images(photo_dir)]


def split_photos(photos, seed):
    """{'train': paths, 'test': paths}: a quarter of the photographs (one or two) for the test split only."""
    if len(photos) < 2:
        return {'train': photos, 'test': photos}
    order = np.random.default_rng([seed, PHOTO_STREAM, 1]).permutation(len(photos))
    photos = [photos[k] for k in order]
    n_test = max(1, min(len(photos) // 4, 2))
    return {'train': photos[n_test:], 'test': photos[:n_test]}


def plan_backgrounds(args, split, num_entries, photos=()):
    """The background tasks of a split and, for each (foreground, i) entry, its background file name."""
    bg_dir = os.path.join(args.out, split, 'bg')
    if args.bg_dir is None:
        names = [f'{split}_bg_{j:04d}.png' for j in range(num_entries)]
        tasks = [dict(kind='bg', seed=args.seed, split=split, index=j, size=args.size, photos=photos,
                      dst=os.path.join(bg_dir, name)) for j, name in enumerate(names)]
        return tasks, names
    photos = data.list_images(args.bg_dir)
    if not photos:
        raise ValueError(f'{args.bg_dir}: no images ({", ".join(data.IMAGE_EXTS)})')
    order = np.random.default_rng([args.seed, PHOTO_STREAM]).permutation(len(photos))
    photos = [photos[k] for k in order]
    num_test = args.num_test_fg * args.num_test_bg
    n_test = max(1, min(num_test, len(photos) // 5)) if len(photos) > 1 else 1
    pool = photos[:n_test] if split == 'test' else (photos[n_test:] or photos)
    pool = pool[:num_entries]
    tasks = [dict(kind='photo', src=os.path.join(args.bg_dir, name), dst=os.path.join(bg_dir, name)) for name in pool]
    return tasks, [pool[k % len(pool)] for k in range(num_entries)]


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if len(args.size) not in (1, 2) or min(args.size) < 16:
        print('error: --size takes S or H W, each at least 16', file=sys.stderr)
        return 2
    for flag in ('num_train_fg', 'num_test_fg', 'num_bg', 'num_test_bg'):
        if getattr(args, flag) < 1:
            print(f'error: --{flag} must be at least 1', file=sys.stderr)
            return 2
    if args.bg_dir is not None and not os.path.isdir(args.bg_dir):
        print(f'error: --bg_dir {args.bg_dir}: not a folder', file=sys.stderr)
        return 2
    args.size = tuple(args.size)
    if args.trimap_width is None:
        args.trimap_width = max(1, int(round(10 * max(args.size) / 512)))
    start = time.time()

    splits = {'train': (args.num_train_fg, args.num_bg), 'test': (args.num_test_fg, args.num_test_bg)}
    bg_tasks, fg_tasks, lists = [], [], {}
    try:
        photos = split_photos(list_photos(args.photo_dir), args.seed)
        for split, (num_fg, num_bg) in splits.items():
            for sub in ('fg', 'alpha', 'bg') + (('trimap',) if split == 'test' else ()):
                os.makedirs(os.path.join(args.out, split, sub), exist_ok=True)
            tasks, bg_names = plan_backgrounds(args, split, num_fg * num_bg, photos[split])
            bg_tasks += tasks
            fg_names = [f'{split}_{i:04d}.png' for i in range(num_fg)]
            lists[split] = (fg_names, bg_names)
        bg_means = dict(zip([t['dst'] for t in bg_tasks], run_all(bg_tasks, args.workers, 'backgrounds')))
        for split, (num_fg, num_bg) in splits.items():
            fg_names, bg_names = lists[split]
            for i, name in enumerate(fg_names):
                first_bg = os.path.join(args.out, split, 'bg', bg_names[i * num_bg])
                fg_tasks.append(dict(
                    kind='fg', seed=args.seed, split=split, index=i, size=args.size, photos=photos[split],
                    near_color=bg_means[first_bg]['mean'].astype(np.float32),
                    fg=os.path.join(args.out, split, 'fg', name), alpha=os.path.join(args.out, split, 'alpha', name),
                    trimap=os.path.join(args.out, split, 'trimap', name) if split == 'test' else None,
                    trimap_width=args.trimap_width))
        results = run_all(fg_tasks, args.workers, 'foregrounds')
    except ValueError as e:  # an unreadable photograph in --bg_dir or --photo_dir
        print(f'error: {e}', file=sys.stderr)
        return 1
    for split, (fg_names, bg_names) in lists.items():
        for list_name, names in (('fg_names.txt', fg_names), ('bg_names.txt', bg_names)):
            path = os.path.join(args.out, split, list_name)
            with open(f'{path}.tmp', 'w') as f:
                f.write(''.join(f'{n}\n' for n in names))
            os.replace(f'{path}.tmp', path)

    sheet = os.path.join(args.out, 'contact_sheet.png') if args.sheet is None else args.sheet
    if sheet:
        fg_names, bg_names = lists['test']
        data.write_png(sheet, contact_sheet(os.path.join(args.out, 'test'), fg_names[:args.sheet_rows], bg_names,
                                            args.num_test_bg))
    elapsed = time.time() - start

    test = [r for r, t in zip(results, fg_tasks) if t['split'] == 'test']
    unknown = sum(r['unknown'] for r in test)
    unknown_fractional = sum(r['unknown_fractional'] for r in test)
    for split, (fg_names, bg_names) in lists.items():
        print(f'{split}: {len(fg_names)} foregrounds, {len(bg_names)} background entries '
              f'({len(set(bg_names))} files) in {os.path.join(args.out, split)}')
    print(f'test trimaps: band width {args.trimap_width} px; fractional alpha (0 < a < 255) in '
          f'{unknown_fractional / max(unknown, 1):.1%} of the unknown pixels')
    if sheet:
        print(f'contact sheet: {sheet}')
    print(f'done in {elapsed:.1f} s with {args.workers} worker(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
