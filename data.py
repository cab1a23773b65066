"""Reading and writing images, composition, trimaps and the datasets of Deep Image Matting.

Conventions: images are RGB uint8 H x W x 3 numpy arrays, alphas and trimaps uint8 H x W
(trimap values 0 background, 128 unknown, 255 foreground). cv2's BGR stays at the file boundary.

Datasets (the paper's sampling, as mmagic's DIM pipeline does it):
- `TrainDataset`: random 320 x 320 training samples recomposed from foreground, alpha and background
  (the pairing of tools/composite.py's composites.csv, or a random background per sample: online mode).
- `TestDataset`: whole images, trimaps and (optionally) alphas from folders, matched by file stem.
- `ValDataset`: whole composites of held-out training foregrounds, with benchmark-style trimaps.
Training entries come from `read_composite_list` (composites.csv) or `entries_from_folders`; hold out
validation foregrounds with `split_by_foreground`.
"""
import collections
import csv
import contextlib
import functools
import io
import math
import os
import re

import cv2
import numpy as np
import torch

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
COMPOSITE_LIST = 'composites.csv'  # written by tools/composite.py into its output folder
COMPOSITE_FIELDS = ('name', 'fg', 'alpha', 'bg')
MASK_BAND = '1%'  # default band of trimaps made from masks (mask_trimap), measured: README, 'From a photo'


# ------------------------------------------------------------------------------------ files

def list_images(folder):
    """Sorted file names (not paths) of the images in `folder`."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: not a folder")
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))


_JPEG_MARKER = re.compile(rb'\xff[^\x00\xd0-\xd7\xff]')  # not a stuffed 0xff00, a restart or a fill byte


def _jpeg_is_whole(buf):
    """True if the JPEG bytes reach their end-of-image marker: segments are skipped by their length,
    entropy-coded data up to the next marker (so an EOI inside an Exif thumbnail does not count)."""
    pos = 2  # after SOI
    while True:
        found = _JPEG_MARKER.search(buf, pos)
        if found is None:
            return False
        at = found.start()
        if buf[at + 1] == 0xD9:  # EOI
            return True
        if at + 4 > len(buf):
            return False
        pos = at + 2 + int.from_bytes(buf[at + 2:at + 4], 'big')


def _png_is_whole(buf):
    """True if the PNG bytes hold every chunk up to and including IEND."""
    pos = 8  # after the signature
    while pos + 8 <= len(buf):
        length, kind = int.from_bytes(buf[pos:pos + 4], 'big'), buf[pos + 4:pos + 8]
        pos += 12 + length  # length, type, data, crc
        if kind == b'IEND':
            return pos <= len(buf)
    return False


def truncated(buf):
    """'JPEG' or 'PNG' when `buf` is such a file cut short (a broken download or copy), else None.
    OpenCV decodes a cut JPEG without a word, filling the rest with gray."""
    if buf[:2] == b'\xff\xd8' and not _jpeg_is_whole(buf):
        return 'JPEG'
    if buf[:8] == b'\x89PNG\r\n\x1a\n' and not _png_is_whole(buf):
        return 'PNG'
    return None


def _read(path):
    """Decoded pixels (8 bits, as OpenCV gives them, BGR); ValueError("PATH: why") for anything that is not a
    whole, readable image of 8 or 16 bits."""
    try:
        with open(path, 'rb') as f:
            buf = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None
    kind = truncated(buf)
    if kind:
        raise ValueError(f"{path}: truncated {kind} (the file ends before its last chunk)")
    try:
        image = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # e.g. a header that claims more pixels than OpenCV's limit
        raise ValueError(f"{path}: OpenCV refuses to decode it ({e.err} in {e.func})") from None
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    if image.dtype == np.uint16:  # 16-bit PNG/TIFF: scale to 8 bits
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{path}: expected 8- or 16-bit pixels, found {image.dtype}")
    return image


def read_image(path):
    """RGB uint8 H x W x 3; grayscale is replicated, the alpha channel of RGBA is dropped."""
    image = _read(path)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_gray(path):
    """uint8 H x W from an 8- or 16-bit file; a colour file is accepted only if its colour channels are
    equal and (RGBA) it is opaque: a matte kept in the alpha channel must not pass for its black RGB."""
    image = _read(path)
    if image.ndim == 3:
        c = image.shape[2]
        gray = c == 1 or (np.array_equal(image[:, :, 0], image[:, :, 1])
                          and np.array_equal(image[:, :, 0], image[:, :, 2])
                          and (c == 3 or np.all(image[:, :, 3] == 255)))
        if not gray:
            raise ValueError(f"{path}: expected a single-channel image, found {c} different channels")
        image = image[:, :, 0]
    return np.ascontiguousarray(image)


def write_atomic(path, write, text=False):
    """Write the file `path` whole or not at all: `write(f)` fills a temporary file beside it
    (PATH.PID.tmp, binary, or UTF-8 text with text=True), which then replaces `path`; the folder is
    created. Any OSError (a full disk, `path` a folder, a file where the folder should be) removes the
    temporary file and becomes ValueError("PATH: cannot write it (why)"); so does nothing else."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{path}: cannot write it (a folder of that name is in the way)")
    blocker = next((p for p in _parents(folder) if os.path.exists(p) and not os.path.isdir(p)), None)
    if blocker:
        raise ValueError(f"{path}: cannot write it ({blocker} is a file, not a folder)")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, 'w', encoding='utf-8', newline='') if text else open(tmp, 'wb') as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as e:  # also an interrupt: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise ValueError(f"{path}: cannot write it ({e.strerror or e})") from None
        raise


def _parents(folder):
    """folder and each folder above it."""
    while True:
        yield folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def write_png(path, array):
    """Write an RGB, RGBA or gray uint8 array as PNG, whole or not at all (`write_atomic`)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode('.png', array)
    if not ok:
        raise ValueError(f"{path}: could not encode PNG")
    write_atomic(path, lambda f: f.write(encoded.tobytes()))


def files_by_stem(folder):
    """({stem: path}, {stem: message}) of the images in `folder`. The rule of every script for two files
    with one stem (a.jpg, a.png): neither is used, and the message, which names both, is the error of
    whatever needed that stem."""
    names = collections.defaultdict(list)
    for name in list_images(folder):
        names[os.path.splitext(name)[0]].append(os.path.join(folder, name))
    found = {stem: paths[0] for stem, paths in names.items() if len(paths) == 1}
    clashes = {stem: f"{' and '.join(paths)} have the same stem {stem!r}: which one is meant?"
               for stem, paths in names.items() if len(paths) > 1}
    return found, clashes


def _files_by_stem(folder):
    """{stem: path} of the images in `folder`; a shared stem is an error (for data that must be whole)."""
    found, clashes = files_by_stem(folder)
    if clashes:
        raise ValueError(next(iter(clashes.values())))
    return found


def read_text(path):
    """The text of a UTF-8 file (a BOM is dropped); ValueError naming the file, and the line where the
    text is not UTF-8."""
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        return raw.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b'\n') + 1
        raise ValueError(f"{path}: line {line} is not UTF-8 text (byte {raw[e.start]:#04x}); save the file as "
                         f"UTF-8") from None


# ------------------------------------------------------------------------- composition, trimaps

def normalize(image):
    """RGB H x W x 3 (uint8, or float on the same 0..255 scale) -> float32 3 x H x W, scaled to
    [0, 1], then ImageNet mean/std."""
    x = np.array(np.asarray(image).transpose(2, 0, 1), dtype=np.float32, order='C')  # 3,H,W, a copy
    x /= 255
    x -= IMAGENET_MEAN[:, None, None]
    x /= IMAGENET_STD[:, None, None]
    return x


def compose(fg, bg, alpha, dtype=np.float64):
    """alpha * fg + (1 - alpha) * bg with alpha = alpha / 255, in float (0..255 scale).

    The Composition-1k files are this truncated to uint8 (`.astype(np.uint8)`), computed in float64
    as the dataset's own script does.
    """
    a = alpha.astype(dtype)[:, :, None] / 255
    return a * fg.astype(dtype) + (1 - a) * bg.astype(dtype)


def _fitted_size(bh, bw, h, w):
    """(height, width) that `fit_background` scales a bh x bw background to before cropping h x w."""
    if bw < w or bh < h:
        ratio = max(w / bw, h / bh)
        return int(np.ceil(bh * ratio)), int(np.ceil(bw * ratio))
    return bh, bw


def fit_background(bg, h, w, pillow=False):
    """The dataset's rule: upscale (bicubic, ceil) a background smaller than h x w, never
    downscale, then take its top-left h x w.

    pillow=True resizes with Pillow's bicubic filter, the one the dataset's own script used; OpenCV's
    (a = -0.75 against Pillow's -0.5) changed 60% of the pixels of an upscaled photograph, by up to 12
    levels. Test composites should use Pillow; training crops use OpenCV, which resizes just the window.
    """
    size = _fitted_size(*bg.shape[:2], h, w)
    if size != bg.shape[:2]:
        if pillow:
            from PIL import Image  # optional: only tools/composite.py asks for it
            bg = np.asarray(Image.fromarray(bg).resize(size[::-1], Image.BICUBIC))
        else:
            bg = cv2.resize(bg, size[::-1], interpolation=cv2.INTER_CUBIC)
    return bg[:h, :w]


def _source_span(n_src, n_fit, start, count):
    """Source pixels [a, b) that resizing n_src -> n_fit needs for output pixels start..start+count-1,
    with `a` on the grid where the resize of the part alone maps exactly like the whole (a * n_fit /
    n_src is an integer); returns (a, b, output index of the part's first pixel)."""
    scale = n_src / n_fit  # cv2: output x samples the source at (x + 0.5) * scale - 0.5, 4 bicubic taps
    first = math.floor((start + 0.5) * scale - 0.5) - 1
    last = math.floor((start + count - 0.5) * scale - 0.5) + 2
    step = n_src // math.gcd(n_src, n_fit)
    a = max(0, first) // step * step
    return a, min(n_src, last + 1), a * n_fit // n_src


def fit_background_window(bg, h, w, top, left, height, width):
    """fit_background(bg, h, w)[top:top + height, left:left + width], resizing only the part of
    the background that the window needs (equal to the whole-image result within 1 intensity level)."""
    bh, bw = bg.shape[:2]
    nh, nw = _fitted_size(bh, bw, h, w)
    if (nh, nw) == (bh, bw):
        return bg[top:top + height, left:left + width]
    ya, yb, dy = _source_span(bh, nh, top, height)
    xa, xb, dx = _source_span(bw, nw, left, width)
    # fx, fy instead of an output size: the part is then resized with exactly the whole image's scale
    part = cv2.resize(bg[ya:yb, xa:xb], None, fx=nw / bw, fy=nh / bh, interpolation=cv2.INTER_CUBIC)
    return part[top - dy:top - dy + height, left - dx:left - dx + width]


def band_trimap(alpha, width):
    """Benchmark-style trimap: unknown (128) within `width` pixels of any pixel that is not
    pure foreground and any that is not pure background; elsewhere exactly the alpha (0 or 255)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    fg = cv2.erode((alpha == 255).astype(np.uint8), kernel)
    bg = cv2.erode((alpha == 0).astype(np.uint8), kernel)
    trimap = np.full(alpha.shape, 128, np.uint8)
    trimap[fg == 1] = 255
    trimap[bg == 1] = 0
    return trimap


def mask_trimap(mask, width):
    """Trimap from a binary mask (foreground where mask >= 128, any other value background): unknown (128)
    within `width` pixels of the mask's boundary on either side, so a band 2 * width wide; elsewhere the
    mask (0 or 255). `band_trimap` of the mask as an alpha of 0 and 255."""
    return band_trimap(np.where(mask >= 128, 255, 0).astype(np.uint8), width)


def band_pixels(band, shape):
    """The band width in pixels for an image of `shape` (H, W, ...): `band` is a number of pixels (20 or
    '20') or a percentage of the longer side ('2%': 16 px on an 800 x 600 image); at least 1."""
    text = str(band).strip()
    try:
        if text.endswith('%'):
            value = float(text[:-1]) / 100 * max(shape[:2])
        else:
            value = int(text)
    except ValueError:
        raise ValueError(f"band {band!r}: expected pixels (20) or a percentage of the longer side (2%)") from None
    if not value > 0:
        raise ValueError(f"band {band!r}: must be positive")
    return max(1, round(value))


@functools.lru_cache(maxsize=None)
def _ellipse(k):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def random_trimap(alpha, k_erode, k_dilate):
    """Training trimap (mmagic's GenerateTrimap): 255 where the alpha eroded
    by a k_erode ellipse is 255, 0 where the alpha dilated by a k_dilate ellipse is 0, else 128."""
    trimap = np.full(alpha.shape, 128, np.uint8)
    trimap[cv2.erode(alpha, _ellipse(k_erode)) >= 255] = 255
    trimap[cv2.dilate(alpha, _ellipse(k_dilate)) <= 0] = 0
    return trimap


def unknown_pixels(alpha):
    """Flat indices (int32) of the pixels with 0 < alpha < 255."""
    return np.flatnonzero((alpha > 0) & (alpha < 255)).astype(np.int32)


def crop_window(h, w, cy, cx, size):
    """(top, left) of the size x size window centred on (cy, cx), shifted to lie inside h x w."""
    top = min(max(cy - size // 2, 0), h - size)
    left = min(max(cx - size // 2, 0), w - size)
    return top, left


def train_sample(fg, alpha, bg, crop_size, centre, flip, k_erode, k_dilate, size=320, unknown=None):
    """One training sample (crop around an unknown pixel, flip, resize, trimap) from a whole foreground, its
    alpha and a background of any size (fitted to the foreground with the dataset's rule). The crop is chosen
    on the alpha, and only the crop window of the background is fitted and composed.

    crop_size: side s of the crop before resizing; centre: float in [0, 1) picking the unknown pixel
    the crop is centred on (the image centre when there is none); flip: bool; k_erode, k_dilate: trimap
    kernel sizes; unknown: `unknown_pixels(alpha)` if already known. Returns uint8 numpy arrays, size x
    size: fg, bg (x 3), alpha and trimap. The network's input, their composite, is made from these on the
    training device (`batch_to_device`), so a loss that recomposes from them matches it exactly. fg, bg,
    alpha may be views of the inputs: copy before changing them in place.
    """
    h, w = alpha.shape
    s = crop_size
    bg_fitted = False
    if h < s or w < s:  # upscale everything until the crop fits (rare: a small foreground)
        ratio = max(s / h, s / w)
        dsize = (max(int(w * ratio), s), max(int(h * ratio), s))
        bg = cv2.resize(fit_background(bg, h, w), dsize, interpolation=cv2.INTER_LINEAR)
        fg = cv2.resize(fg, dsize, interpolation=cv2.INTER_LINEAR)
        alpha = cv2.resize(alpha, dsize, interpolation=cv2.INTER_LINEAR)
        (h, w), unknown, bg_fitted = alpha.shape, None, True
    if unknown is None:
        unknown = unknown_pixels(alpha)
    if len(unknown):
        cy, cx = divmod(int(unknown[min(int(centre * len(unknown)), len(unknown) - 1)]), w)
    else:
        cy, cx = h // 2, w // 2
    top, left = crop_window(h, w, cy, cx, s)
    fg = fg[top:top + s, left:left + s]
    alpha = alpha[top:top + s, left:left + s]
    bg = bg[top:top + s, left:left + s] if bg_fitted else fit_background_window(bg, h, w, top, left, s, s)
    if flip:
        fg, bg, alpha = cv2.flip(fg, 1), cv2.flip(bg, 1), cv2.flip(alpha, 1)
    if s != size:
        fg, bg, alpha = (cv2.resize(x, (size, size), interpolation=cv2.INTER_LINEAR) for x in (fg, bg, alpha))
    trimap = random_trimap(alpha, k_erode, k_dilate)
    return dict(trimap=trimap, alpha=alpha, fg=fg, bg=bg)


def to_tensors(sample):
    """A `train_sample` as the loader ships it: uint8 tensors fg and bg 3xSxS, alpha and trimap 1xSxS, 8 bytes a
    pixel (0.8 MB at 320x320, where the float32 batch's 11 channels take 4.5 MB). `batch_to_device` makes
    the model's and the loss's float32 batch from a batch of these."""
    def chw(x):  # H,W(,C) uint8 -> C,H,W uint8
        return torch.from_numpy(np.ascontiguousarray(x.reshape(*x.shape[:2], -1).transpose(2, 0, 1)))

    return {k: chw(sample[k]) for k in ('fg', 'bg', 'alpha', 'trimap')}


@functools.lru_cache(maxsize=None)
def _normalisation_constants(device):
    """(255, ImageNet mean 3x1x1, std 3x1x1) as float32 tensors on `device`, copied there once: a copy from
    ordinary memory waits for the GPU to finish its queue. 255 is a tensor because CUDA divides by a Python
    number as a product with its reciprocal, which can differ from numpy's division in the last bit."""
    return (torch.full((), 255, dtype=torch.float32, device=device),
            *(torch.from_numpy(v).to(device)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD)))


def batch_to_device(batch, device):
    """The float32 batch the model and the loss take, made on `device` from a batch of `to_tensors` (uint8,
    copied without blocking: from pinned memory the copy overlaps the GPU's work): img Nx3xSxS, the composite
    alpha * fg + (1 - alpha) * bg on the 0..255 scale normalised with ImageNet's mean and std, computed
    with the float32 operations of `compose(..., np.float32)` and `normalize` in their order, so the numbers
    are theirs; trimap Nx1xSxS (0/128/255); alpha Nx1xSxS, fg and bg Nx3xSxS in [0, 1]."""
    u8 = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    c255, mean, std = _normalisation_constants(device)
    fg, bg = u8['fg'].float(), u8['bg'].float()
    alpha = u8['alpha'].float() / c255
    img = alpha * fg + (1 - alpha) * bg  # compose
    img = (img / c255 - mean) / std  # normalize
    return dict(img=img, trimap=u8['trimap'].float(), alpha=alpha, fg=fg / c255, bg=bg / c255)


# --------------------------------------------------------------------------- composite lists

def find_composite_list(path):
    """The composites.csv meant by `path`: the file itself, or composites.csv in the folder `path`
    (tools/composite.py's OUT) or in its parent (so OUT/image, the old --imgDir, works too)."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        for folder in (path, os.path.dirname(os.path.abspath(path))):
            if os.path.isfile(os.path.join(folder, COMPOSITE_LIST)):
                return os.path.join(folder, COMPOSITE_LIST)
    raise ValueError(f"{path}: no {COMPOSITE_LIST} there or in its parent folder (write it with "
                     f"tools/composite.py)")


def read_composite_list(csv_path, need_bg=True):
    """Entries [dict(name, fg, alpha, bg)] with absolute paths from a composites.csv (or the folder
    holding it, or a folder beside it: see `find_composite_list`). Paths in the file are relative to
    its folder. Every field must be filled and every listed file exist, except that with need_bg=False
    (online composition draws its own backgrounds) an empty bg is None. Errors name the file and line."""
    csv_path = find_composite_list(csv_path)
    folder = os.path.dirname(os.path.abspath(csv_path))
    reader = csv.DictReader(io.StringIO(read_text(csv_path), newline=''))
    missing = [k for k in COMPOSITE_FIELDS if k not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{csv_path}: expected the columns {','.join(COMPOSITE_FIELDS)}, "
                         f"found {','.join(reader.fieldnames or [])}")
    entries = []
    for row in reader:
        empty = [k for k in COMPOSITE_FIELDS if not (row[k] or '').strip() and (need_bg or k != 'bg')]
        if empty:
            raise ValueError(f"{csv_path}: line {reader.line_num}: empty {', '.join(empty)}")
        entry = {k: row[k] if k == 'name' else os.path.normpath(os.path.join(folder, row[k])) if row[k] else None
                 for k in COMPOSITE_FIELDS}
        absent = [k for k in ('fg', 'alpha', 'bg') if entry[k] and not os.path.isfile(entry[k])]
        if absent:
            raise ValueError(f"{csv_path}: line {reader.line_num}: {absent[0]} {entry[absent[0]]} not found")
        entries.append(entry)
    if not entries:
        raise ValueError(f"{csv_path}: lists no composites")
    return entries


def write_composite_list(csv_path, entries):
    """Write entries (dicts with name, fg, alpha, bg) as a composites.csv, paths relative to its
    folder with / separators, whole or not at all (`write_atomic`)."""
    folder = os.path.dirname(os.path.abspath(csv_path))

    def rel(p):
        return os.path.relpath(os.path.abspath(p), folder).replace(os.sep, '/') if p else ''

    def write(f):
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(COMPOSITE_FIELDS)
        for e in entries:
            writer.writerow([e['name'], rel(e['fg']), rel(e['alpha']), rel(e['bg'])])

    write_atomic(csv_path, write, text=True)


def entries_from_folders(fg_dir, alpha_dir, bg_dir=None):
    """One entry per foreground in fg_dir, its alpha matched by file stem in alpha_dir (the older
    --fgDir/--alphaDir layout, for online composition). With bg_dir, foreground k is paired with the
    k-th background in sorted order (cycling); that pairing is used by ValDataset (TrainDataset in
    online mode draws its own). Without it, bg is None."""
    fgs, alphas = _files_by_stem(fg_dir), _files_by_stem(alpha_dir)
    if not fgs:
        raise ValueError(f"{fg_dir}: no images ({', '.join(IMAGE_EXTS)})")
    missing = [s for s in fgs if s not in alphas]
    if missing:
        raise ValueError(f"{alpha_dir}: no alpha for {len(missing)} foreground(s) of {fg_dir}, "
                         f"e.g. {', '.join(missing[:3])}")
    bgs = background_paths(bg_dir) if bg_dir else []
    return [dict(name=stem, fg=os.path.abspath(fgs[stem]), alpha=os.path.abspath(alphas[stem]),
                 bg=os.path.abspath(bgs[k % len(bgs)]) if bgs else None)
            for k, stem in enumerate(sorted(fgs))]


def background_paths(bg_dir):
    """The paths of the images in bg_dir, sorted by name; ValueError when there are none."""
    paths = [os.path.join(bg_dir, n) for n in list_images(bg_dir)]
    if not paths:
        raise ValueError(f"{bg_dir}: no images ({', '.join(IMAGE_EXTS)})")
    return paths


def split_by_foreground(entries, val_fraction, seed):
    """(train_entries, val_entries): a random `val_fraction` of the foregrounds (at least one, and
    never all, when val_fraction > 0 and there are two or more) goes to validation with all its
    composites, so no validation foreground is ever seen in training. Order within each list is kept."""
    fgs = sorted({e['fg'] for e in entries})
    n_val = 0
    if val_fraction > 0 and len(fgs) > 1:
        n_val = min(max(round(val_fraction * len(fgs)), 1), len(fgs) - 1)
    held = set(np.random.default_rng(seed).permutation(len(fgs))[:n_val].tolist())
    val_fgs = {fgs[i] for i in held}
    return [e for e in entries if e['fg'] not in val_fgs], [e for e in entries if e['fg'] in val_fgs]


def first_per_foreground(entries, k):
    """At most k entries of each foreground, in list order (validation: a few composites of each)."""
    seen = collections.Counter()
    kept = []
    for e in entries:
        if seen[e['fg']] < k:
            seen[e['fg']] += 1
            kept.append(e)
    return kept


# ------------------------------------------------------------------------------------ datasets

class _Cache:
    """Least-recently-used store of decoded arrays in one process, bounded in bytes."""

    def __init__(self, max_bytes):
        self.max_bytes, self.bytes, self.items = max_bytes, 0, collections.OrderedDict()

    def get(self, key, load):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key][0]
        value = load()
        size = sum(a.nbytes for a in value) if isinstance(value, tuple) else value.nbytes
        if size <= self.max_bytes:
            self.items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                self.bytes -= self.items.popitem(last=False)[1][1]
        return value


def _load_foreground(fg_path, alpha_path):
    fg, alpha = read_image(fg_path), read_gray(alpha_path)
    if fg.shape[:2] != alpha.shape:
        raise ValueError(f"{alpha_path}: alpha is {alpha.shape[1]}x{alpha.shape[0]}, its foreground "
                         f"{fg_path} is {fg.shape[1]}x{fg.shape[0]}")
    return fg, alpha, unknown_pixels(alpha)


class TrainDataset(torch.utils.data.Dataset):
    """Random training samples (`train_sample`), recomposed from foreground, alpha and background.

    entries: dicts with fg, alpha, bg paths (`read_composite_list`, `entries_from_folders`).
    online_bgs: list of background paths; when given, each sample draws its background from it
    (online composition) and the entries' bg is ignored.
    Sample `i` depends only on (seed, epoch, i): `set_epoch` before each epoch's iterator. The epoch
    lives in shared memory, so it reaches DataLoader workers also when they persist
    (persistent_workers=True), which keeps their caches of decoded images from one epoch to the next.
    cache_mb: decoded foregrounds (with alphas) and backgrounds kept per process (3/4 and 1/4 of it).
    Never call cv2.setNumThreads inside a forked worker: it can hang on the thread pool inherited from
    the parent (set it in the main process before the loader starts, if at all). Spawned workers start
    without that pool: train.py's loader spawns them and sets one thread each (`worker_init`).
    __getitem__ -> the dict of uint8 tensors of `to_tensors` (`batch_to_device` makes a batch of them float).
    """

    def __init__(self, entries, size=320, crop_sizes=(320, 480, 640), seed=0, online_bgs=None, cache_mb=2000):
        if not entries:
            raise ValueError("TrainDataset: no entries")
        if online_bgs is not None and not len(online_bgs):
            raise ValueError("TrainDataset: online_bgs is empty")
        if online_bgs is None and any(not e.get('bg') for e in entries):
            raise ValueError("TrainDataset: entries without a background need online_bgs")
        self.entries, self.size, self.crop_sizes = list(entries), size, tuple(crop_sizes)
        self.seed, self.online_bgs = seed, list(online_bgs) if online_bgs is not None else None
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._fg_cache = _Cache(cache_mb * 2**20 * 3 // 4)
        self._bg_cache = _Cache(cache_mb * 2**20 // 4)

    def __len__(self):
        return len(self.entries)

    def set_epoch(self, epoch):
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self):
        return int(self._epoch)

    def draw(self, index):
        """The random choices of sample `index` this epoch, all from one generator seeded with
        (seed, epoch, index), drawn in a fixed order whatever the data."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        bg_u, centre = rng.random(2)
        crop_size = self.crop_sizes[rng.integers(len(self.crop_sizes))]
        flip = bool(rng.random() < 0.5)
        k_erode, k_dilate = (int(k) for k in rng.integers(1, 30, size=2))
        bg = self.entries[index]['bg'] if self.online_bgs is None \
            else self.online_bgs[min(int(bg_u * len(self.online_bgs)), len(self.online_bgs) - 1)]
        return dict(bg=bg, crop_size=int(crop_size), centre=float(centre), flip=flip,
                    k_erode=k_erode, k_dilate=k_dilate)

    def __getitem__(self, index):
        entry, d = self.entries[index], self.draw(index)
        fg, alpha, unknown = self._fg_cache.get((entry['fg'], entry['alpha']),
                                                lambda: _load_foreground(entry['fg'], entry['alpha']))
        bg = self._bg_cache.get(d['bg'], lambda: read_image(d['bg']))
        return to_tensors(train_sample(fg, alpha, bg, d['crop_size'], d['centre'], d['flip'], d['k_erode'],
                                       d['k_dilate'], size=self.size, unknown=unknown))

    def __getstate__(self):  # pickled (spawned workers): start with empty caches, not a copy
        state = self.__dict__.copy()
        state['_fg_cache'] = _Cache(self._fg_cache.max_bytes)
        state['_bg_cache'] = _Cache(self._bg_cache.max_bytes)
        return state


def worker_init(worker_id):
    """DataLoader worker_init_fn for spawned workers: one OpenCV thread per worker. Each worker is one
    process already; OpenCV's own threads in every worker would only contend for the same cores."""
    cv2.setNumThreads(1)


class TestDataset(torch.utils.data.Dataset):
    """Whole test images with their trimaps and (when alpha_dir is given) alphas, matched by file stem.

    __getitem__ -> dict(name (the image's file stem), image uint8 HxWx3, trimap uint8 HxW, alpha uint8
    HxW or None). Not for a DataLoader's default collate (sizes differ, alpha may be None).
    """

    def __init__(self, img_dir, trimap_dir, alpha_dir=None):
        images = _files_by_stem(img_dir)
        if not images:
            raise ValueError(f"{img_dir}: no images ({', '.join(IMAGE_EXTS)})")
        trimaps = _files_by_stem(trimap_dir)
        alphas = _files_by_stem(alpha_dir) if alpha_dir else None
        for folder, found in ((trimap_dir, trimaps), (alpha_dir, alphas)):
            missing = [s for s in images if found is not None and s not in found]
            if missing:
                raise ValueError(f"{folder}: nothing named like {len(missing)} image(s) of {img_dir}, "
                                 f"e.g. {', '.join(missing[:3])}")
        self.items = [(stem, images[stem], trimaps[stem], alphas[stem] if alphas else None)
                      for stem in sorted(images)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        name, image_path, trimap_path, alpha_path = self.items[index]
        image = read_image(image_path)
        trimap = _read_same_size(trimap_path, image, image_path)
        alpha = _read_same_size(alpha_path, image, image_path) if alpha_path else None
        return dict(name=name, image=image, trimap=trimap, alpha=alpha)


def _read_same_size(path, image, image_path):
    gray = read_gray(path)
    if gray.shape != image.shape[:2]:
        raise ValueError(f"{path}: is {gray.shape[1]}x{gray.shape[0]}, its image {image_path} is "
                         f"{image.shape[1]}x{image.shape[0]}")
    return gray


class ValDataset(torch.utils.data.Dataset):
    """Validation on held-out training foregrounds: each entry's whole composite, made as
    tools/composite.py makes it (fit_background, compose, truncated to uint8), with a benchmark-style
    trimap (`band_trimap(alpha, trimap_width)`).

    max_size: an image whose longer side exceeds it is shrunk (area averaging, image and alpha alike,
    aspect ratio kept) before the trimap is made, so validation stays quick; None keeps every size.
    trimap_width then counts pixels of the shrunk image. Every entry needs a bg (composites.csv has one;
    `entries_from_folders(..., bg_dir)` pairs one). __getitem__ -> the dict of TestDataset.
    """

    def __init__(self, entries, trimap_width=10, max_size=None):
        no_bg = [e['name'] for e in entries if not e.get('bg')]
        if no_bg:
            raise ValueError(f"ValDataset: {len(no_bg)} entries have no background, e.g. {', '.join(no_bg[:3])} "
                             f"(pair them: entries_from_folders(fg_dir, alpha_dir, bg_dir))")
        self.entries, self.trimap_width, self.max_size = list(entries), trimap_width, max_size

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, index):
        e = self.entries[index]
        fg, alpha, _ = _load_foreground(e['fg'], e['alpha'])
        h, w = alpha.shape
        image = compose(fg, fit_background(read_image(e['bg']), h, w), alpha).astype(np.uint8)
        if self.max_size and max(h, w) > self.max_size:
            scale = self.max_size / max(h, w)
            dsize = (max(round(w * scale), 1), max(round(h * scale), 1))
            image = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(alpha, dsize, interpolation=cv2.INTER_AREA)
        return dict(name=e['name'], image=image, trimap=band_trimap(alpha, self.trimap_width), alpha=alpha)
