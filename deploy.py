"""Alpha mattes for a folder of images and trimaps with a trained Deep Image Matting checkpoint.

    python deploy.py --img_dir IMAGES --trimap_dir TRIMAPS --resume CKPT --save_dir OUT [--alpha_dir GT]

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
import contextlib
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


def read_trimap(path):
    """A trimap file -> cleaned uint8 H x W. A colour file is accepted when its channels are nearly equal
    (a gray trimap saved as colour JPEG) and refused when it is really coloured."""
    rgb = data.read_image(path)  # names the file for missing / unreadable / unsupported pixel types
    spread = int((rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)).max())
    if spread > 2 * BG_MAX:
        raise ValueError(f"{path}: expected a grayscale trimap, found colour (channels differ by up to "
                         f"{spread})")
    gray = rgb[:, :, 0] if spread == 0 else np.round(rgb.mean(axis=2)).astype(np.uint8)
    return clean_trimap(gray)


def resize_trimap(trimap, h, w):
    """A clean trimap resized to h x w: unknown wherever the area it covers touches an unknown pixel,
    otherwise the majority of foreground and background."""
    unknown = cv2.resize((trimap == UNKNOWN).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0
    fg = cv2.resize((trimap == 255).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
    out = np.where(fg, 255, 0).astype(np.uint8)
    out[unknown] = UNKNOWN
    return out


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


def _forward(model, images, trimaps, stage, device):
    """Run the network on same-sized uint8 images (list of H x W x 3) and clean trimaps (list of H x W);
    returns float32 N x H x W alphas. Inputs are padded to a multiple of 32 and the outputs cropped back."""
    h, w = trimaps[0].shape
    img = torch.from_numpy(np.stack([data.normalize(pad_to_multiple(i)) for i in images]))  # N,3,H',W'
    trimap = torch.from_numpy(np.stack([pad_to_multiple(t) for t in trimaps])[:, None].astype(np.float32))
    # channels_last (with a channels_last model, see load_model) is the fast path of oneDNN and cuDNN
    img = img.to(device).contiguous(memory_format=torch.channels_last)
    trimap = trimap.to(device).contiguous(memory_format=torch.channels_last)
    amp = contextlib.nullcontext()  # fp32 on the CPU
    if device.type == 'cuda':
        amp = torch.autocast('cuda', dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    with torch.inference_mode(), amp:
        alpha_ed, alpha_refined = model(img, trimap, refine=stage >= 2)
        alpha = net.output_for_stage(alpha_ed, alpha_refined, stage)  # N,1,H',W'
        alpha = alpha[:, 0, :h, :w].float().cpu().numpy()  # N,H,W
    return alpha


def _predict_whole(model, image, trimap, stage, max_size, device):
    h, w = trimap.shape
    if max_size and max(h, w) > max_size:
        scale = max_size / max(h, w)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = _forward(model, [_resize_image(image, sh, sw)], [resize_trimap(trimap, sh, sw)], stage, device)
        return cv2.resize(small[0], (w, h), interpolation=cv2.INTER_LINEAR)
    return _forward(model, [image], [trimap], stage, device)[0]


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


def _predict_crop(model, image, trimap, stage, tile, device):
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
                          [trimap[y:y + th, x:x + tw] for y, x in chunk], stage, device)
        for (y, x), alpha in zip(chunk, alphas):
            acc[y:y + th, x:x + tw] += alpha * window
            weight[y:y + th, x:x + tw] += window
    # Pixels in no processed tile are known: metrics.fix_known overwrites them.
    return (acc / np.maximum(weight, 1e-12))[:h, :w]


def _predict_resize(model, image, trimap, stage, size, device):
    h, w = trimap.shape
    sh, sw = size
    small = _forward(model, [_resize_image(image, sh, sw)], [resize_trimap(trimap, sh, sw)], stage, device)
    return cv2.resize(small[0], (w, h), interpolation=cv2.INTER_LINEAR)


def predict(model, image, trimap, stage, method='whole', max_size=1600, tile=None, size=(320, 320),
            device=None):
    """The alpha matte of one image: float32 H x W in [0, 1] with the trimap's known regions fixed.

    image: uint8 H x W x 3 RGB; trimap: uint8 H x W (0/128/255; other values are cleaned as `clean_trimap`
    says); stage: 0-1 use the encoder-decoder alpha, 2-3 the refined alpha; method: 'whole', 'crop' or
    'resize' (module docstring); max_size: longer side above which 'whole' works at a reduced scale (0 or
    None: no limit); tile: crop tile size, an int or (h, w), default `size`; size: (h, w) for 'resize';
    device: where the inputs go (default: the model's device). The model is used as it is (no .eval()).
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
    if method == 'whole':
        alpha = _predict_whole(model, image, trimap, stage, max_size, device)
    elif method == 'crop':
        tile = tuple(size) if tile is None else (tile, tile) if isinstance(tile, int) else tuple(tile)
        alpha = _predict_crop(model, image, trimap, stage, tile, device)
    elif method == 'resize':
        alpha = _predict_resize(model, image, trimap, stage, tuple(size), device)
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
    args = ckpt.get('args') if isinstance(ckpt.get('args'), dict) else {}
    model = net.DIM(skip=bool(ckpt.get('skip', args.get('skip', False))))
    net.load_state(model, ckpt['model'], path)
    # channels_last: about 20% faster on the CPU (oneDNN) and the usual fast path of cuDNN
    model.to(device=device, memory_format=torch.channels_last).eval()
    return model, stage


# ------------------------------------------------------------------------------------------- command line

def get_args_parser():
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter, allow_abbrev=False)
    p.add_argument('--img_dir', '--imgDir', required=True, help="folder of images (RGB, RGBA: alpha ignored, "
                   "grayscale, 8 or 16 bit)")
    p.add_argument('--trimap_dir', '--trimapDir', required=True,
                   help=f"folder of trimaps named like the images (any image extension); values <= {BG_MAX} "
                   f"are background, >= {FG_MIN} foreground, others unknown")
    p.add_argument('--alpha_dir', '--alphaDir', default=None,
                   help="folder of ground-truth alphas: score the saved mattes and print mean SAD/MSE/GRAD/CONN")
    p.add_argument('--resume', '--ckpt', required=True, help="checkpoint to deploy (train.py or tools/chg_model.py)")
    p.add_argument('--save_dir', '--saveDir', default='results', help="where the mattes are written")
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


def pick_device(name):
    """'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:N'; ValueError for anything else."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device (cpu, cuda, cuda:N)") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but no CUDA device is available (leave it out to run on "
                         f"the CPU)")
    return device


def _check_folders(args):
    folders = [('--img_dir', args.img_dir), ('--trimap_dir', args.trimap_dir)]
    if args.alpha_dir is not None:
        folders.append(('--alpha_dir', args.alpha_dir))
    for flag, folder in folders:
        if not os.path.isdir(folder):
            raise ValueError(f"{flag} {folder}: not a folder")
        if os.path.isdir(args.save_dir) and os.path.samefile(folder, args.save_dir):
            raise ValueError(f"--save_dir {args.save_dir} is the {flag} folder: its files would be overwritten")
    try:  # a file where the folder should be fails here once, not once per image
        os.makedirs(args.save_dir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--save_dir {args.save_dir}: cannot make the folder ({e.strerror})") from None


def _find(path, stem, files, what, folder):
    """The file of `stem` in one of files_by_stem's answers, or ValueError naming the image and why not."""
    found, clashes = files
    if stem in clashes:
        raise ValueError(f"{path}: no single {what}: {clashes[stem]}")
    if stem not in found:
        raise ValueError(f"{path}: no {what} named {stem}.* in {folder}")
    return found[stem]


def _deploy_one(model, stage, args, device, name, trimaps, alphas):
    """Predict, save and (with alphas) score one image; returns its metrics or None. Raises ValueError."""
    stem = os.path.splitext(name)[0]
    path = os.path.join(args.img_dir, name)
    image = data.read_image(path)
    trimap_path = _find(path, stem, trimaps, 'trimap', args.trimap_dir)
    trimap = read_trimap(trimap_path)
    if trimap.shape != image.shape[:2]:
        raise ValueError(f"{trimap_path}: trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image is "
                         f"{image.shape[1]}x{image.shape[0]} (width x height)")
    alpha = None
    if alphas is not None:  # read the ground truth before the (slow) prediction, so a bad file fails fast
        alpha_path = _find(path, stem, alphas, 'ground-truth alpha', args.alpha_dir)
        alpha = data.read_gray(alpha_path)
        if alpha.shape != trimap.shape:
            raise ValueError(f"{alpha_path}: alpha is {alpha.shape[1]}x{alpha.shape[0]} but the image is "
                             f"{image.shape[1]}x{image.shape[0]} (width x height)")
    try:
        pred = predict(model, image, trimap, stage, method=args.crop_or_resize, max_size=args.max_size,
                       tile=args.tile, size=(args.size_h, args.size_w), device=device)
    except torch.OutOfMemoryError:
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        raise ValueError(f"{path}: out of memory at {image.shape[1]}x{image.shape[0]} (try a smaller "
                         f"--max_size or --crop_or_resize crop)") from None
    if not np.isfinite(pred).all():  # e.g. fp16 overflow: saved, NaN would pass for background
        raise ValueError(f"{path}: the network's output is not finite (NaN or infinity)")
    pred = np.round(pred * 255).astype(np.uint8)
    data.write_png(os.path.join(args.save_dir, stem + '.png'), pred)
    return metrics.compute_all(pred, alpha, trimap) if alpha is not None else None


def _remove_stale(path):
    """Remove an older run's matte of a failed image, which would pass for this run's."""
    if os.path.isfile(path):
        try:
            os.remove(path)
        except OSError as e:
            tqdm.write(f"error: {path}: an older matte is left there, it could not be removed ({e.strerror})",
                       file=sys.stderr)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        device = pick_device('cuda' if args.cuda else args.device)
        _check_folders(args)
        names = data.list_images(args.img_dir)
        if not names:
            raise ValueError(f"--img_dir {args.img_dir}: no images ({', '.join(data.IMAGE_EXTS)})")
        trimaps = data.files_by_stem(args.trimap_dir)
        alphas = data.files_by_stem(args.alpha_dir) if args.alpha_dir is not None else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            model, stage = load_model(args.resume, device, stage=args.stage, trust=args.trust)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"deploy: {len(names)} images, stage {stage} "
          f"({'refined' if stage >= 2 else 'encoder-decoder'} alpha), method {args.crop_or_resize}, "
          f"device {device}", file=sys.stderr)

    failed, scores, written = [], [], 0
    images, clashes = data.files_by_stem(args.img_dir)  # two images would write one matte: neither is used
    for name in tqdm(names, desc='deploy', unit='img', dynamic_ncols=True):
        stem = os.path.splitext(name)[0]
        if stem not in images and stem not in clashes:  # the other image of a clash, reported already
            failed.append(name)
            continue
        try:
            if stem in clashes:
                raise ValueError(f"{args.img_dir}: no matte {stem}.png written: {clashes.pop(stem)}")
            score = _deploy_one(model, stage, args, device, name, trimaps, alphas)
        except ValueError as e:
            tqdm.write(f"error: {e}", file=sys.stderr)
            failed.append(name)
            _remove_stale(os.path.join(args.save_dir, stem + '.png'))
            continue
        written += 1
        if score is not None:
            scores.append(score)

    print(f"wrote {written} of {len(names)} mattes to {args.save_dir}", file=sys.stderr)
    if alphas is not None and scores:
        print(metrics.format_table({f"{os.path.basename(os.path.normpath(args.resume))} "
                                    f"({len(scores)} images)": metrics.mean_metrics(scores)}))
    if failed:
        print(f"error: {len(failed)} of {len(names)} images failed: {', '.join(failed[:10])}"
              f"{' ...' if len(failed) > 10 else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
