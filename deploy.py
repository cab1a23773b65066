"""Alpha mattes for a folder of images and trimaps with a trained Deep Image Matting checkpoint.

    python deploy.py --img_dir IMAGES --trimap_dir TRIMAPS --resume CKPT --save_dir OUT [--alpha_dir GT]
    python deploy.py photo.jpg --mask mask.png --resume CKPT -o matte.png --cutout cutout.png \
        --new_bg '#00ff00' --composite on_green.png

Inputs and outputs are folders (files matched by stem, outputs named stem.png) or, for one image, files of any
name (an output ending in .png is that file, anything else a folder). Masks stand in for trimaps: foreground
where >= 128, the trimap unknown within --band of the boundary (data.mask_trimap). Cutouts are RGBA PNGs of the
foreground colours estimated by PyMatting (Germer et al. 2020; imported only when asked for) and the matte;
--new_bg composites them on a colour or an image.

The checkpoint's stage picks the output: the encoder-decoder alpha for stages 0-1, the refined alpha for
stages 2-3 (`--stage` overrides it). Checkpoints converted from mmagic by tools/chg_model.py load the same way.

Methods (`--crop_or_resize`):
- whole (the paper's test setting): the image is reflect-padded at the bottom and right to a multiple of 32,
  run once and cropped back; no resizing. An image whose longer side exceeds `--max_size` is processed at a
  reduced scale instead (longer side = max_size, aspect ratio kept; image shrunk with area averaging, trimap
  shrunk so that any output pixel touching an unknown pixel stays unknown), and the alpha is upscaled back
  bilinearly. Downscaling was chosen over tiling because it keeps the whole image as context, which the
  network was trained to use, and costs one pass; its price is detail lost on very large images.
- crop: overlapping tiles of `--tile` pixels (default size_h x size_w) placed only over the unknown region:
  bands of tile rows over the rows holding unknown pixels, then tiles over each band's unknown columns, each
  starting 1/8 tile before the first unknown pixel not yet covered with that much context (so neighbours
  overlap by 1/4 tile, a stride of 3/4 tile, and the last tile is flush with the border). Known-only areas
  are never sent through the network. Overlapping outputs are blended with a tent window (largest at a
  tile's centre, never zero). An image smaller than a tile is reflect-padded to one tile.
- resize: the whole image is resized to size_h x size_w, run, and the alpha resized back (bilinear).
Every method then copies the known regions from the full-resolution trimap (0 where background, 1 where
foreground). Saved mattes are round(255 * alpha), 8-bit PNG, named after the input (stem + '.png'), each
written whole (temporary file, then rename). A bad input (unreadable, no trimap, sizes that differ) is
named in one line; the rest of the folder is still processed (an older matte of the bad input's name is
removed) and the exit status is 1.

Trimaps: 8-bit (or 16-bit) grayscale, 0 background / 128 unknown / 255 foreground. Trimaps as people make
them (JPEG-compressed, anti-aliased, saved as near-gray colour) are mapped to the three classes by
`clean_trimap`: value <= 48 -> background, >= 207 -> foreground, anything between -> unknown. JPEG noise of
up to +-40 keeps every class; an anti-aliased edge pixel (a blend of two classes) becomes unknown unless it
is within 48 of pure black or white, so doubtful pixels are left to the network rather than forced.
"""
import argparse
import collections
import functools
import os
import sys
import warnings

import cv2
import numpy as np
import torch
from tqdm import tqdm

import data
import metrics
import net

UNKNOWN = 128
BG_MAX = 48  # trimap values <= BG_MAX are background
FG_MIN = 207  # trimap values >= FG_MIN are foreground; values between are unknown
TILE_BATCH = 8  # tiles per forward pass in the crop method


# ------------------------------------------------------------------------------------------- trimaps

def clean_trimap(trimap):
    """uint8 H x W with any values -> uint8 H x W with 0 / 128 / 255 (thresholds: module docstring)."""
    out = np.full(trimap.shape, UNKNOWN, np.uint8)
    out[trimap <= BG_MAX] = 0
    out[trimap >= FG_MIN] = 255
    return out


def _read_grayish(path, what):
    """A grayscale file -> uint8 H x W. A colour file is accepted when its channels are nearly equal
    (gray saved as colour JPEG) and refused when it is really coloured; `what` names it in the message."""
    rgb = data.read_image(path)  # names the file for missing / unreadable / unsupported pixel types
    spread = int((rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)).max())
    if spread > 2 * BG_MAX:
        raise ValueError(f"{path}: expected a grayscale {what}, found colour (channels differ by up to "
                         f"{spread})")
    return rgb[:, :, 0] if spread == 0 else np.round(rgb.mean(axis=2)).astype(np.uint8)


def read_trimap(path):
    """A trimap file -> cleaned uint8 H x W. A colour file is accepted when its channels are nearly equal
    (a gray trimap saved as colour JPEG) and refused when it is really coloured."""
    return clean_trimap(_read_grayish(path, 'trimap'))


def read_mask(path):
    """A binary mask file -> uint8 H x W as stored (foreground where >= 128, see data.mask_trimap). Refused,
    naming the file, when coloured (as trimaps are), empty or all foreground (no boundary to matte)."""
    mask = _read_grayish(path, 'mask')
    n_fg = int(np.count_nonzero(mask >= 128))
    if n_fg == 0:
        raise ValueError(f"{path}: the mask is empty (no pixel >= 128): no foreground to matte")
    if n_fg == mask.size:
        raise ValueError(f"{path}: the mask is all foreground (no pixel < 128): no boundary to matte")
    return mask


def resize_trimap(trimap, h, w):
    """A clean trimap resized to h x w: unknown wherever the area it covers touches an unknown pixel,
    otherwise the majority of foreground and background."""
    unknown = cv2.resize((trimap == UNKNOWN).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0
    fg = cv2.resize((trimap == 255).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
    out = np.where(fg, 255, 0).astype(np.uint8)
    out[unknown] = UNKNOWN
    return out


# ------------------------------------------------------------------------------------------- cutouts

def _foreground_ml():
    """PyMatting's estimate_foreground_ml; PyMatting is needed only for cutouts, so it is imported here."""
    try:
        from pymatting import estimate_foreground_ml
    except ImportError as e:
        raise ValueError(f"cutouts need PyMatting for the foreground colours: pip install pymatting "
                         f"({e})") from None
    return estimate_foreground_ml


def estimate_foreground(image, alpha):
    """Foreground colours, uint8 H x W x 3, of an RGB uint8 image with its alpha (float H x W in [0, 1]):
    multi-level foreground estimation (Germer et al. 2020) by PyMatting, imported only here."""
    fg = _foreground_ml()(image.astype(np.float32) / 255, alpha.astype(np.float32))
    return np.round(np.clip(fg, 0, 1) * 255).astype(np.uint8)


def parse_color(text):
    """'#00ff00', '00ff00' or '0,255,0' -> (r, g, b); None when `text` is not written as a colour."""
    text = text.strip()
    if len(text.lstrip('#')) == 6 and all(c in '0123456789abcdefABCDEF' for c in text.lstrip('#')):
        return tuple(int(text.lstrip('#')[i:i + 2], 16) for i in (0, 2, 4))
    parts = text.split(',')
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    return None


def read_background(text):
    """--new_bg: a colour (parse_color) -> (r, g, b), anything else an image file -> RGB uint8 H x W x 3."""
    color = parse_color(text)
    return color if color is not None else data.read_image(text)


def fit_new_background(bg, h, w):
    """An h x w x 3 uint8 background: a colour (r, g, b) filled, or an image scaled to cover h x w (aspect
    ratio kept) and cut from its centre."""
    if isinstance(bg, tuple):
        return np.full((h, w, 3), bg, np.uint8)
    bh, bw = bg.shape[:2]
    scale = max(h / bh, w / bw)
    sh, sw = max(h, round(bh * scale)), max(w, round(bw * scale))
    if (sh, sw) != (bh, bw):
        bg = _resize_image(bg, sh, sw)
    top, left = (sh - h) // 2, (sw - w) // 2
    return bg[top:top + h, left:left + w]


def composite_on(fg, alpha, bg):
    """fg over bg (uint8 H x W x 3 each) with alpha (uint8 H x W), rounded to uint8: what a viewer shows
    for the RGBA cutout (fg, alpha) laid on bg."""
    return np.round(data.compose(fg, bg, alpha)).astype(np.uint8)


# ------------------------------------------------------------------------------------------- inference

def pad_to_multiple(x, multiple=32):
    """Reflect-pad the bottom and right of an H x W (x C) array so both sides are multiples of `multiple`.

    Returns the padded array; `padded[:H, :W]` is the input. Works for any size, even 1 x 1 (numpy repeats
    the reflection as often as needed, and a single row or column is repeated).
    """
    h, w = x.shape[:2]
    if h % multiple == 0 and w % multiple == 0:
        return x
    pad = [(0, -h % multiple), (0, -w % multiple)] + [(0, 0)] * (x.ndim - 2)
    return np.pad(x, pad, mode='reflect')


def _resize_image(image, h, w):
    shrink = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _forward(model, images, trimaps, stage, device, dtype):
    """Run the network in `dtype` on same-sized uint8 images (list of H x W x 3) and clean trimaps (list of
    H x W); returns float32 N x H x W alphas. Inputs are padded to a multiple of 32, outputs cropped back."""
    h, w = trimaps[0].shape
    img = torch.from_numpy(np.stack([data.normalize(pad_to_multiple(i)) for i in images]))  # N,3,H',W'
    trimap = torch.from_numpy(np.stack([pad_to_multiple(t) for t in trimaps])[:, None].astype(np.float32))
    # channels_last (with a channels_last model, see load_model) is the fast path of oneDNN and cuDNN
    img = img.to(device).contiguous(memory_format=torch.channels_last)
    trimap = trimap.to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), net.autocast(device, dtype):
        alpha_ed, alpha_refined = model(img, trimap, refine=stage >= 2)
        alpha = net.output_for_stage(alpha_ed, alpha_refined, stage)  # N,1,H',W'
        alpha = alpha[:, 0, :h, :w].float().cpu().numpy()  # N,H,W
    return alpha


def _predict_whole(model, image, trimap, stage, max_size, device, dtype):
    h, w = trimap.shape
    if max_size and max(h, w) > max_size:
        scale = max_size / max(h, w)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = _forward(model, [_resize_image(image, sh, sw)], [resize_trimap(trimap, sh, sw)], stage, device,
                         dtype)
        return cv2.resize(small[0], (w, h), interpolation=cv2.INTER_LINEAR)
    return _forward(model, [image], [trimap], stage, device, dtype)[0]


def _cover(need, t):
    """Starts of windows of length t (<= len(need)) that together cover every True entry of `need`.

    Each window starts t/8 before the first entry not yet covered with t/8 of context on both sides (or at
    the border), so where entries run on, neighbours overlap by t/4 (a stride of 3/4 t, the last window
    flush with the end); stretches with nothing needed get no window.
    """
    n, margin = len(need), t // 8
    needed = np.flatnonzero(need)
    starts, pos = [], 0
    while True:
        rest = needed[needed >= pos]
        if rest.size == 0:
            return starts
        start = int(min(max(rest[0] - margin, 0), n - t))
        starts.append(start)
        pos = start + t - margin if start + t < n else n


def _tent(n):
    """1-D blending weights, largest at the centre, 1/n at the ends (never zero)."""
    return 1 - np.abs((2 * np.arange(n) + 1) / n - 1)


def _predict_crop(model, image, trimap, stage, tile, device, dtype):
    th, tw = tile
    h, w = trimap.shape
    big_h, big_w = max(h, th), max(w, tw)
    if (big_h, big_w) != (h, w):  # an image smaller than a tile: reflect-pad it to one tile
        image = np.pad(image, [(0, big_h - h), (0, big_w - w), (0, 0)], mode='reflect')
        trimap = np.pad(trimap, [(0, big_h - h), (0, big_w - w)], mode='reflect')
    unknown = np.zeros((big_h, big_w), bool)
    unknown[:h, :w] = trimap[:h, :w] == UNKNOWN  # not the reflected padding
    boxes = []  # bands of tile rows over the unknown rows, then tiles over each band's unknown columns
    for y in _cover(unknown.any(axis=1), th):
        boxes += [(y, x) for x in _cover(unknown[y:y + th].any(axis=0), tw)]
    window = np.outer(_tent(th), _tent(tw)).astype(np.float32)
    acc = np.zeros((big_h, big_w), np.float32)
    weight = np.zeros((big_h, big_w), np.float32)
    for i in range(0, len(boxes), TILE_BATCH):
        chunk = boxes[i:i + TILE_BATCH]
        alphas = _forward(model, [image[y:y + th, x:x + tw] for y, x in chunk],
                          [trimap[y:y + th, x:x + tw] for y, x in chunk], stage, device, dtype)
        for (y, x), alpha in zip(chunk, alphas):
            acc[y:y + th, x:x + tw] += alpha * window
            weight[y:y + th, x:x + tw] += window
    # Pixels in no processed tile are known: metrics.fix_known overwrites them.
    return (acc / np.maximum(weight, 1e-12))[:h, :w]


def _predict_resize(model, image, trimap, stage, size, device, dtype):
    h, w = trimap.shape
    sh, sw = size
    small = _forward(model, [_resize_image(image, sh, sw)], [resize_trimap(trimap, sh, sw)], stage, device, dtype)
    return cv2.resize(small[0], (w, h), interpolation=cv2.INTER_LINEAR)


def predict(model, image, trimap, stage, method='whole', max_size=1600, tile=None, size=(320, 320),
            device=None, dtype=None):
    """The alpha matte of one image: float32 H x W in [0, 1] with the trimap's known regions fixed.

    image: uint8 H x W x 3 RGB; trimap: uint8 H x W (0/128/255; other values are cleaned as `clean_trimap`
    says); stage: 0-1 use the encoder-decoder alpha, 2-3 the refined alpha; method: 'whole', 'crop' or
    'resize' (module docstring); max_size: longer side above which 'whole' works at a reduced scale (0 or
    None: no limit); tile: crop tile size, an int or (h, w), default `size`; size: (h, w) for 'resize';
    device: where the inputs go (default: the model's device); dtype: what the network runs in (autocast;
    default `net.pick_precision('auto', device)`), the alpha being float32 either way. The model is used as
    it is (no .eval()).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 H x W x 3 image, found {image.dtype} of shape {image.shape}")
    if trimap.shape != image.shape[:2]:
        raise ValueError(f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image is "
                         f"{image.shape[1]}x{image.shape[0]} (width x height)")
    trimap = clean_trimap(trimap)
    if not (trimap == UNKNOWN).any():  # nothing for the network to decide
        return (trimap / 255).astype(np.float32)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = net.pick_precision('auto', device) if dtype is None else dtype
    if method == 'whole':
        alpha = _predict_whole(model, image, trimap, stage, max_size, device, dtype)
    elif method == 'crop':
        tile = tuple(size) if tile is None else (tile, tile) if isinstance(tile, int) else tuple(tile)
        alpha = _predict_crop(model, image, trimap, stage, tile, device, dtype)
    elif method == 'resize':
        alpha = _predict_resize(model, image, trimap, stage, tuple(size), device, dtype)
    else:
        raise ValueError(f"method must be 'whole', 'crop' or 'resize', not {method!r}")
    return metrics.fix_known(np.clip(alpha, 0, 1).astype(np.float32), trimap, fg_value=1)


def load_model(path, device, stage=None, trust=False):
    """A DIM from a checkpoint of this project (any stage, or converted from mmagic), in eval mode on
    `device`. Returns (model, stage): the checkpoint's stage unless `stage` is given."""
    device = torch.device(device)
    ckpt = net.load_checkpoint(path, trust=trust)
    saved_stage = ckpt.get('stage')
    if stage is None:
        if saved_stage not in net.STAGE_TRAINS:
            raise ValueError(f"{path}: the checkpoint records no stage 0-3 (found {saved_stage!r}); "
                             f"give --stage")
        stage = int(saved_stage)
    elif stage >= 2 and saved_stage in (0, 1):
        warnings.warn(f"{path}: a stage-{saved_stage} checkpoint deployed as stage {stage}: "
                      f"its refiner was never trained")
    model = net.DIM(skip=bool(net.recorded_skip(ckpt)))  # the variant the checkpoint records
    net.load_state(model, ckpt['model'], path)
    # channels_last: the fast layout of oneDNN on the CPU (README, "Deploying") and of cuDNN
    model.to(device=device, memory_format=torch.channels_last).eval()
    return model, stage


# ------------------------------------------------------------------------------------------- command line

def get_args_parser():
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter, allow_abbrev=False)
    p.add_argument('image', nargs='?', default=None, help="an image or a folder of images (as --img_dir)")
    p.add_argument('--img_dir', '--imgDir', '--img', default=None, help="folder of images, or one image (RGB, "
                   "RGBA: alpha ignored, grayscale, 8 or 16 bit)")
    guide = p.add_mutually_exclusive_group()
    guide.add_argument('--trimap_dir', '--trimapDir', '--trimap', default=None,
                       help=f"folder of trimaps named like the images (any image extension), or one trimap; "
                       f"values <= {BG_MAX} are background, >= {FG_MIN} foreground, others unknown")
    guide.add_argument('--mask_dir', '--mask', default=None,
                       help="in place of trimaps: folder of binary masks named like the images, or one mask; "
                       "foreground where >= 128; the trimap is unknown within --band of the mask's boundary")
    p.add_argument('--band', default=data.MASK_BAND,
                   help="masks: the unknown band on either side of the boundary, in pixels (20) or as a "
                   "percentage of the image's longer side (2%%)")
    p.add_argument('--alpha_dir', '--alphaDir', '--alpha', default=None,
                   help="folder of ground-truth alphas (or one file, for one image): score the saved mattes and "
                   "print mean SAD/MSE/GRAD/CONN")
    p.add_argument('--resume', '--ckpt', required=True, help="checkpoint to deploy (train.py or tools/chg_model.py)")
    p.add_argument('--save_dir', '--saveDir', '--out', '-o', default='results',
                   help="where the mattes are written: a folder (FOLDER/stem.png) or, for one image, a .png file")
    p.add_argument('--cutout_dir', '--cutout', default=None,
                   help="also write RGBA cutouts (estimated foreground colours, the matte as alpha; needs "
                   "pymatting) to this folder or, for one image, this .png file")
    p.add_argument('--composite_dir', '--composite', default=None,
                   help="also write the subject composited on --new_bg to this folder or .png file")
    p.add_argument('--new_bg', default=None,
                   help="the new background of --composite_dir: a colour ('#00ff00' or '0,255,0') or an image "
                   "(scaled to cover the photo, aspect ratio kept, cut from its centre)")
    p.add_argument('--stage', type=int, default=None, choices=[0, 1, 2, 3],
                   help="0-1: encoder-decoder alpha, 2-3: refined alpha; None: the checkpoint's stage")
    p.add_argument('--crop_or_resize', default='whole', choices=['whole', 'crop', 'resize'],
                   help="inference method: whole image (the paper), overlapping tiles, or resize")
    p.add_argument('--max_size', type=int_at_least(0), default=1600,
                   help="whole: an image with a longer side above this runs at a reduced scale (0: no limit)")
    p.add_argument('--size_h', type=int_at_least(1), default=320,
                   help="resize: network input height; crop: tile height")
    p.add_argument('--size_w', type=int_at_least(1), default=320, help="resize: network input width; crop: tile width")
    p.add_argument('--tile', type=int_at_least(1), default=None, help="crop: square tile size; None: size_h x size_w")
    p.add_argument('--device', default='auto', help="'auto' (cuda when present, else cpu), 'cpu', 'cuda', 'cuda:1'")
    p.add_argument('--cuda', action='store_true', help="old spelling of --device cuda")
    p.add_argument('--precision', default='auto', choices=net.PRECISIONS,
                   help="what the network runs in; auto: bf16 on GPUs of compute capability 8.0 or more, fp16 on "
                   "older ones, bf16 on CPUs with bf16 units (AMX or AVX512-BF16), fp32 on other CPUs; mattes "
                   "are float32 either way"),
    p.add_argument('--trust', action='store_true',
                   help="load the checkpoint with full unpickling (only for files you trust)")
    p.add_argument('--crop_h', type=int, default=None, help="accepted for old scripts, unused")
    p.add_argument('--crop_w', type=int, default=None, help="accepted for old scripts, unused")
    return p


def int_at_least(least):
    """An argparse type: an integer >= least. argparse names the flag in its one-line error, before any
    work starts (a 0 that would divide or a negative size that OpenCV would refuse mid-run)."""
    def parse(text):
        value = int(text)  # a ValueError: argparse says "invalid int_at_least value"
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
        return value
    parse.__name__ = 'int_at_least'
    return parse


def float_between(low, high, open_low=False, open_high=False):
    """An argparse type: a number from low to high (ends excluded when open); NaN is refused."""
    def parse(text):
        value = float(text)
        inside = (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
        if not inside:
            raise argparse.ArgumentTypeError(f"must be in {'(' if open_low else '['}{low}, {high}"
                                             f"{')' if open_high else ']'}, not {text}")
        return value
    parse.__name__ = 'float_between'
    return parse


def _find(path, stem, files, what, folder):
    """The file of `stem` in one of files_by_stem's answers, or ValueError naming the image and why not."""
    found, clashes = files
    if stem in clashes:
        raise ValueError(f"{path}: no single {what}: {clashes[stem]}")
    if stem not in found:
        raise ValueError(f"{path}: no {what} named {stem}.* in {folder}")
    return found[stem]


def _inputs(img, guide, guide_flag, alpha_dir):
    """(image paths, {stem: trimap or mask path}, {stem: alpha path} or None). A folder of images is matched
    by file stem with folders of trimaps (or masks) and alphas; one image file may come with files of any
    name, or with folders (matched by its stem)."""
    if os.path.isdir(img):
        names = data.list_images(img)
        if not names:
            raise ValueError(f"--img_dir {img}: no images ({', '.join(data.IMAGE_EXTS)})")
        paths, single_stem = [os.path.join(img, n) for n in names], None
    elif os.path.isfile(img):
        paths, single_stem = [img], os.path.splitext(os.path.basename(img))[0]
    else:
        raise ValueError(f"--img_dir {img}: no such file or folder")

    def by_stem(path, flag):
        if os.path.isdir(path):
            return data.files_by_stem(path)
        if os.path.isfile(path) and single_stem is not None:
            return {single_stem: path}, {}
        if os.path.isfile(path):
            raise ValueError(f"{flag} {path}: a file, but the images are a folder: give a folder")
        raise ValueError(f"{flag} {path}: no such file or folder")

    guides = by_stem(guide, guide_flag)
    alphas = by_stem(alpha_dir, '--alpha_dir') if alpha_dir is not None else None
    return paths, guides, alphas


def output_path(target, stem, single):
    """Where the output of the image `stem` goes: `target` itself for a single image when `target` names a
    .png file (and is no folder), else target/stem.png."""
    if single and target.lower().endswith('.png') and not os.path.isdir(target):
        return target
    return os.path.join(target, stem + '.png')


def _check_outputs(targets, single_stem, inputs):
    """Refuse output targets ({flag: target}) that are no PNG file or folder, that would write two outputs to
    one file, or that would overwrite an input: a folder ((flag, path) in `inputs`) when the images are a
    folder, a file of the one image (`single_stem`, None for a folder) otherwise."""
    single = single_stem is not None
    seen = {}
    for flag, target in targets.items():
        if target.lower().endswith(data.IMAGE_EXTS) and not os.path.isdir(target) \
                and not (single and target.lower().endswith('.png')):
            raise ValueError(f"{flag} {target}: " + ("outputs are PNG: name a .png file or a folder" if single
                             else "the images are a folder, so this must be a folder"))
        if not single and os.path.isfile(target):
            raise ValueError(f"{flag} {target}: a file, but the images are a folder: give a folder")
        place = output_path(target, single_stem, True) if single else target
        if os.path.abspath(place) in seen:
            raise ValueError(f"{flag} {target}: the same place as {seen[os.path.abspath(place)]}: one would "
                             f"overwrite the other")
        seen[os.path.abspath(place)] = f"{flag} {target}"
        for in_flag, source in inputs:
            if os.path.exists(place) and os.path.samefile(source, place):
                raise ValueError(f"{flag} {target} is the {in_flag} {'file' if single else 'folder'}: it "
                                 f"would be overwritten")


def _read_sample(path, guides, alphas, args):
    """(image, trimap, ground-truth alpha or None) of the image at `path`: its trimap, or the trimap of its mask
    (--band); ValueError naming a file that is missing or of another size."""
    stem = os.path.splitext(os.path.basename(path))[0]
    image = data.read_image(path)
    kind = 'trimap' if args.mask_dir is None else 'mask'
    guide_path = _find(path, stem, guides, kind, args.trimap_dir or args.mask_dir)
    guide = read_trimap(guide_path) if kind == 'trimap' else read_mask(guide_path)
    if guide.shape != image.shape[:2]:
        raise ValueError(f"{guide_path}: {kind} is {guide.shape[1]}x{guide.shape[0]} but the image is "
                         f"{image.shape[1]}x{image.shape[0]} (width x height)")
    trimap = guide if kind == 'trimap' else data.mask_trimap(guide, data.band_pixels(args.band, guide.shape))
    alpha = None
    if alphas is not None:  # read before the (slow) prediction, so a bad file fails fast
        alpha_path = _find(path, stem, alphas, 'ground-truth alpha', args.alpha_dir)
        alpha = data.read_gray(alpha_path)
        if alpha.shape != trimap.shape:
            raise ValueError(f"{alpha_path}: alpha is {alpha.shape[1]}x{alpha.shape[0]} but the image is "
                             f"{image.shape[1]}x{image.shape[0]} (width x height)")
    return image, trimap, alpha


def too_large_reason(error):
    """What a torch.OutOfMemoryError of a prediction says in a message: net.PastIndexLimit has its own reason."""
    return error if isinstance(error, net.PastIndexLimit) else 'out of memory'


def _deploy_one(path, outputs, read_sample, matte_of, new_bg):
    """Predict, save and (with a ground truth) score the image at `path`; returns its metrics or None. Raises
    ValueError. outputs: {'matte': path, and 'cutout', 'composite' when asked for}; read_sample(path): the
    image, trimap and alpha or None (`_read_sample`); matte_of(image, trimap): `predict` with the run's
    model and options."""
    image, trimap, alpha = read_sample(path)
    try:
        pred = matte_of(image, trimap)
    except torch.OutOfMemoryError as e:  # or net.PastIndexLimit, met the same way
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise ValueError(f"{path}: {too_large_reason(e)} at {image.shape[1]}x{image.shape[0]} (try a "
                         f"smaller --max_size or --crop_or_resize crop)") from None
    if not np.isfinite(pred).all():  # e.g. fp16 overflow: saved, NaN would pass for background
        raise ValueError(f"{path}: the network's output is not finite (NaN or infinity)")
    pred = np.round(pred * 255).astype(np.uint8)
    data.write_png(outputs['matte'], pred)
    if 'cutout' in outputs or 'composite' in outputs:
        fg = estimate_foreground(image, pred / 255)  # the saved matte's alpha, so the files agree
        if 'cutout' in outputs:
            data.write_png(outputs['cutout'], np.dstack([fg, pred]))
        if 'composite' in outputs:
            bg = fit_new_background(new_bg, *pred.shape)
            data.write_png(outputs['composite'], composite_on(fg, pred, bg))
    return metrics.compute_all(pred, alpha, trimap) if alpha is not None else None


def _remove_stale(path):
    """Remove an older run's matte of a failed image, which would pass for this run's."""
    if os.path.isfile(path):
        try:
            os.remove(path)
        except OSError as e:
            tqdm.write(f"error: {path}: an older matte is left there, it could not be removed ({e.strerror})",
                       file=sys.stderr)


def _input_folder(args):
    """The image or folder to deploy on; ValueError for flags that do not go together."""
    if args.image is not None and args.img_dir is not None:
        raise ValueError(f"two inputs ({args.image} and --img_dir {args.img_dir}): give one")
    img = args.image if args.image is not None else args.img_dir
    if img is None:
        raise ValueError("no input: give an image or a folder of images (IMAGE or --img_dir)")
    if args.trimap_dir is None and args.mask_dir is None:
        raise ValueError("give trimaps (--trimap_dir, or --trimap for one image) or masks (--mask_dir, --mask)")
    if args.mask_dir is not None:
        data.band_pixels(args.band, (1, 1))  # refuse a malformed --band before any work
    if (args.new_bg is None) != (args.composite_dir is None):
        raise ValueError("--new_bg and --composite_dir go together (the background, and where to write)")
    return img


def _output_targets(args, img, guide_flag, guide, guides, alphas):
    """({'matte' | 'cutout' | 'composite': folder or file}, the stem of the one image or None); ValueError
    when an output would overwrite an input (the input folders, or the files that the one image uses)."""
    targets = {'matte': args.save_dir, 'cutout': args.cutout_dir, 'composite': args.composite_dir}
    targets = {kind: target for kind, target in targets.items() if target is not None}
    inputs = [('--img_dir', img), (guide_flag, guide), ('--alpha_dir', args.alpha_dir)]
    single_stem = os.path.splitext(os.path.basename(img))[0] if os.path.isfile(img) else None
    if single_stem is not None:
        inputs = [('--img_dir', img), (guide_flag, guides[0].get(single_stem)),
                  ('--alpha_dir', alphas[0].get(single_stem) if alphas is not None else None)]
    flags = {'matte': '--save_dir', 'cutout': '--cutout_dir', 'composite': '--composite_dir'}
    _check_outputs({flags[kind]: target for kind, target in targets.items()}, single_stem,
                   [(flag, path) for flag, path in inputs if path is not None])
    if len(targets) > 1:
        _foreground_ml()  # fail now, not once per image, when PyMatting is missing
    return targets, single_stem


def _deploy_all(paths, targets, single, deploy_one):
    """Deploy on every image of `paths` (deploy_one(path, outputs): `_deploy_one` with the run's reader,
    predictor and background), naming each bad one in a line and going on. Returns (number written, names that
    failed, scores of those with a ground truth)."""
    failed, scores, written = [], [], 0
    by_stem = collections.defaultdict(list)
    for path in paths:
        by_stem[os.path.splitext(os.path.basename(path))[0]].append(path)
    for path in tqdm(paths, desc='deploy', unit='img', disable=None, dynamic_ncols=True):
        name = os.path.basename(path)
        stem = os.path.splitext(name)[0]
        if len(by_stem[stem]) > 1:  # two images would write one matte: neither is used (the rule of every script)
            if path == by_stem[stem][0]:
                tqdm.write(f"error: {' and '.join(by_stem[stem])} have the same stem {stem!r}: which one is meant? "
                           f"No matte {stem}.png written", file=sys.stderr)
            failed.append(name)
            continue
        files = {kind: output_path(target, stem, single) for kind, target in targets.items()}
        try:
            score = deploy_one(path, files)
        except ValueError as e:
            tqdm.write(f"error: {e}", file=sys.stderr)
            failed.append(name)
            for stale in files.values():
                _remove_stale(stale)
            continue
        written += 1
        if score is not None:
            scores.append(score)
    return written, failed, scores


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        img = _input_folder(args)
        new_bg = read_background(args.new_bg) if args.new_bg is not None else None
        device = net.pick_device('cuda' if args.cuda else args.device)
        dtype = net.pick_precision(args.precision, device)
        guide_flag, guide = ('--trimap_dir', args.trimap_dir) if args.mask_dir is None \
            else ('--mask_dir', args.mask_dir)
        paths, guides, alphas = _inputs(img, guide, guide_flag, args.alpha_dir)
        targets, single_stem = _output_targets(args, img, guide_flag, guide, guides, alphas)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            model, stage = load_model(args.resume, device, stage=args.stage, trust=args.trust)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    guide_note = 'trimaps' if args.mask_dir is None else f'masks with a band of {args.band}'
    print(f"deploy: {len(paths)} images, {guide_note}, stage {stage} "
          f"({'refined' if stage >= 2 else 'encoder-decoder'} alpha), method {args.crop_or_resize}, "
          f"device {device}, {str(dtype).replace('torch.', '')}", file=sys.stderr)

    single = single_stem is not None
    matte_of = functools.partial(predict, model, stage=stage, method=args.crop_or_resize, max_size=args.max_size,
                                 tile=args.tile, size=(args.size_h, args.size_w), device=device, dtype=dtype)
    read_sample = functools.partial(_read_sample, guides=guides, alphas=alphas, args=args)
    deploy_one = functools.partial(_deploy_one, read_sample=read_sample, matte_of=matte_of, new_bg=new_bg)
    written, failed, scores = _deploy_all(paths, targets, single, deploy_one)
    where = output_path(args.save_dir, single_stem, True) if single else args.save_dir
    print(f"wrote {written} of {len(paths)} mattes to {where}", file=sys.stderr)
    if alphas is not None and scores:
        print(metrics.format_table({f"{os.path.basename(os.path.normpath(args.resume))} "
                                    f"({len(scores)} images)": metrics.mean_metrics(scores)}))
    if failed:
        print(f"error: {len(failed)} of {len(paths)} images failed: {', '.join(failed[:10])}"
              f"{' ...' if len(failed) > 10 else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
