"""From a mask to a cutout, measured: the band width of trimaps made from masks, and foreground colours.

    python tools/bench_cutout.py --real_dir DIR [--ckpt CKPT] [--bands 5 10 20 40]
    python tools/bench_cutout.py --parts foreground

Parts (--parts):
  band        on photographs laid out as DIR/image, DIR/alpha (DIR/trimap optional): the mask is the
              ground-truth alpha thresholded (alpha >= 128), the trimap data.mask_trimap(mask, band) for each
              --bands; the matte comes from closed-form matting (pymatting.estimate_alpha_cf) and, with
              --ckpt, from DIM (deploy.predict, whole image). SAD (thousands, as metrics.py) is counted over
              the whole image (the error of the matte a user gets: known pixels are the mask's, so a band too
              narrow pays where the true alpha is fractional outside it), over the generated trimap's
              unknown region, and over DIR/trimap's unknown region when there is one.
  foreground  on composites of synthetic foregrounds (tools/synthesize.py, --fg_size, in a temporary folder)
              laid with data.compose on their backgrounds: the mean absolute error, in 8-bit levels over
              the pixels with 0 < alpha < 1, of the foreground colours estimated from the composite and its
              true alpha (deploy.estimate_foreground, PyMatting's estimate_foreground_ml) against taking the
              composite's own colours; also weighted by alpha (the error that reaches a new composite,
              alpha * (F_est - F)), and the seconds per image.
"""
import argparse
import contextlib
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import data  # noqa: E402
import deploy  # noqa: E402
import metrics  # noqa: E402
import net  # noqa: E402
import report  # noqa: E402
import synthesize  # noqa: E402


def mask_from_alpha(alpha, coarse):
    """The mask a user might have: the true alpha thresholded (alpha >= 128), or with coarse > 1 that mask as
    a segmentation model working at 1/coarse of the resolution would draw it (area-averaged down, bilinear up,
    thresholded at one half: boundaries off by a few pixels, thin strands lost)."""
    mask = (alpha >= 128).astype(np.float32)
    if coarse > 1:
        h, w = alpha.shape
        small = cv2.resize(mask, (max(1, w // coarse), max(1, h // coarse)), interpolation=cv2.INTER_AREA)
        mask = (cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.float32)
    return (mask * 255).astype(np.uint8)


def bench_band(real_dir, bands, coarse, ckpt, device):
    """{method: {band: dict(sad_image, sad_band, sad_trimap, unknown, seconds)}}, means over the images."""
    methods = {'closed-form': report.closed_form}
    if ckpt:
        model, stage = deploy.load_model(ckpt, device)
        methods[f'DIM stage {stage}'] = lambda image, trimap: deploy.predict(model, image, trimap, stage)
    has_trimaps = os.path.isdir(os.path.join(real_dir, 'trimap'))
    dataset = data.TestDataset(os.path.join(real_dir, 'image'),  # without trimaps the alphas stand in, unused
                               os.path.join(real_dir, 'trimap' if has_trimaps else 'alpha'),
                               os.path.join(real_dir, 'alpha'))
    rows = {m: {b: [] for b in bands} for m in methods}
    for i in range(len(dataset)):
        s = dataset[i]
        image, alpha = s['image'], s['alpha']
        everything = np.full(alpha.shape, 128, np.uint8)
        for band in bands:
            trimap = data.mask_trimap(mask_from_alpha(alpha, coarse), band)
            for method, fn in methods.items():
                t = time.perf_counter()
                pred = metrics.fix_known(np.clip(fn(image, trimap), 0, 1), trimap, fg_value=1)
                pred = np.round(pred * 255).astype(np.uint8)
                row = dict(seconds=time.perf_counter() - t, unknown=float(np.mean(trimap == 128)),
                           sad_image=metrics.sad(pred, alpha, everything), sad_band=metrics.sad(pred, alpha, trimap))
                if has_trimaps:
                    row['sad_trimap'] = metrics.sad(pred, alpha, deploy.clean_trimap(s['trimap']))
                rows[method][band].append(row)
                print(f"  {s['name']} band {band}: {method} SAD {row['sad_image']:.2f} (whole image)",
                      file=sys.stderr, flush=True)
    return {m: {b: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for b, rs in by_band.items()}
            for m, by_band in rows.items()}


def synthetic_foregrounds(root, n, size):
    """(kind, fg, alpha, composite) of n synthetic test foregrounds of size x size on their first backgrounds."""
    gen = ['--out', root, '--num_train_fg', '1', '--num_bg', '1', '--num_test_fg', str(n), '--num_test_bg', '1',
           '--size', str(size), str(size), '--sheet', '', '--workers', '1']
    with contextlib.redirect_stdout(sys.stderr):
        if synthesize.main(gen) != 0:
            raise RuntimeError("tools/synthesize.py failed")
    test = os.path.join(root, 'test')
    bgs = [line.strip() for line in open(os.path.join(test, 'bg_names.txt')) if line.strip()]
    for k, name in enumerate(data.list_images(os.path.join(test, 'fg'))):
        fg = data.read_image(os.path.join(test, 'fg', name))
        alpha = data.read_gray(os.path.join(test, 'alpha', name))
        bg = data.fit_background(data.read_image(os.path.join(test, 'bg', bgs[k])), *alpha.shape)
        kind = synthesize.KINDS[k % len(synthesize.KINDS)]  # what foreground k mainly shows
        yield kind, fg, alpha, data.compose(fg, bg, alpha).astype(np.uint8)  # truncated, as Composition-1k's


def bench_foreground(n, size):
    """Mean errors (levels) over 0 < alpha < 1 of estimated and composite colours, and seconds per image."""
    deploy.estimate_foreground(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 0.5))  # numba loads/compiles
    errors = {'composite colours': [], 'estimate_foreground_ml': []}
    weighted = {k: [] for k in errors}
    seconds, cpu_seconds = [], []
    with tempfile.TemporaryDirectory(prefix='bench_cutout_') as root:
        for kind, fg, alpha, image in synthetic_foregrounds(root, n, size):
            t, cpu = time.perf_counter(), time.process_time()
            estimate = deploy.estimate_foreground(image, alpha / 255)
            seconds.append(time.perf_counter() - t)
            cpu_seconds.append(time.process_time() - cpu)  # what it costs where the machine is shared
            part = (alpha > 0) & (alpha < 255)
            a = alpha[part][:, None] / 255
            for key, colours in (('composite colours', image), ('estimate_foreground_ml', estimate)):
                diff = np.abs(colours[part].astype(np.float64) - fg[part])
                errors[key].append(diff.mean())
                weighted[key].append((a * diff).sum() / (a.sum() * 3))
            print(f"  {kind} {size}x{size}: {part.mean():.0%} fractional; composite "
                  f"{errors['composite colours'][-1]:.2f}, estimate {errors['estimate_foreground_ml'][-1]:.2f} levels",
                  file=sys.stderr, flush=True)
    return dict(images=len(seconds), seconds=float(np.mean(seconds)), cpu_seconds=float(np.mean(cpu_seconds)),
                mae={k: float(np.mean(v)) for k, v in errors.items()},
                weighted={k: float(np.mean(v)) for k, v in weighted.items()})


def get_args_parser():
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter, allow_abbrev=False)
    p.add_argument('--parts', default='band,foreground', help="comma-separated: band, foreground")
    p.add_argument('--real_dir', default=None, help="band: a folder with image/, alpha/ (and trimap/)")
    p.add_argument('--bands', type=int, nargs='+', default=[2, 5, 10, 20, 40],
                   help="band: widths in pixels on either side of the mask's boundary")
    p.add_argument('--coarse', type=int, default=1, help="band: 1: the mask is the thresholded true alpha; N > 1: "
                   "that mask as drawn at 1/N of the resolution (mask_from_alpha)")
    p.add_argument('--ckpt', default=None, help="band: also a DIM checkpoint")
    p.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:1'")
    p.add_argument('--fg_count', type=int, default=10, help="foreground: synthetic foregrounds")
    p.add_argument('--fg_size', type=int, default=800, help="foreground: their side (square)")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    parts = [x.strip() for x in args.parts.split(',') if x.strip()]
    try:
        if set(parts) - {'band', 'foreground'} or not parts:
            raise ValueError(f"--parts {args.parts}: choose from band, foreground")
        if 'band' in parts and (args.real_dir is None or not os.path.isdir(os.path.join(args.real_dir, 'alpha'))):
            raise ValueError("band: --real_dir must name a folder with image/ and alpha/")
        device = net.pick_device(args.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if 'band' in parts:
        results = bench_band(args.real_dir, args.bands, args.coarse, args.ckpt, device)
        source = 'the thresholded true alpha (>= 128)'
        if args.coarse > 1:
            source += f', drawn at 1/{args.coarse} of the resolution'
        print(f"\n== band: trimaps from {source}, {args.real_dir.rstrip('/')}; "
              f"SAD in thousands, means over the images")
        for method, by_band in results.items():
            print(f"\n{method}\n| band (px each side) | unknown | SAD, whole image | SAD, band | "
                  f"SAD, benchmark trimap | s/image |\n|---|---|---|---|---|---|")
            for band, r in by_band.items():
                print(f"| {band} | {r['unknown']:.1%} | {r['sad_image']:.2f} | {r['sad_band']:.2f} | "
                      f"{r.get('sad_trimap', float('nan')):.2f} | {r['seconds']:.2f} |")
    if 'foreground' in parts:
        r = bench_foreground(args.fg_count, args.fg_size)
        print(f"\n== foreground: {r['images']} synthetic composites, {args.fg_size}x{args.fg_size}; error in "
              f"8-bit levels over 0 < alpha < 1, mean over images\n"
              f"| colours | mean abs error | alpha-weighted |\n|---|---|---|")
        for key in r['mae']:
            print(f"| {key} | {r['mae'][key]:.2f} | {r['weighted'][key]:.2f} |")
        print(f"estimate_foreground: {r['seconds']:.3f} s per image ({r['cpu_seconds']:.3f} s of CPU time)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
