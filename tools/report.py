"""Score mattes against the ground truth next to the trivial baseline, and draw a picture of a few.

Scored on the same images (--img_dir, --trimap_dir, --alpha_dir; or the test split of a tools/synthesize.py
output, --synth_dir, composited in memory as tools/composite.py composites it):
  --pred_dir     predictions already made (deploy.py's --saveDir), PRED_DIR/STEM.png for each image STEM
  --ckpt         a checkpoint's alpha, computed now in each of --precisions, side by side
  --closed_form  closed-form matting (Levin et al. 2008: pymatting.estimate_alpha_cf; pip install pymatting)
  always         the trivial baseline, 0.5 everywhere in the unknown region (known regions from the trimap)
Methods computed here also get their seconds per image; each image's SADs go to stderr as it is scored.
The picture shows, per image: the image, the trimap, the predicted alpha, the ground truth, and the subject
placed on a new background with the predicted alpha (the image itself stands in for the foreground colour,
as it would for a user's photo).

  python tools/report.py --pred_dir results/demo --img_dir data/demo/test/image \\
      --trimap_dir data/demo/test/trimap --alpha_dir data/demo/test/alpha --picture results/demo.png
  python tools/report.py --ckpt runs/demo/stage3/best.pth --closed_form --img_dir REAL_DEV/image \\
      --trimap_dir REAL_DEV/trimap --alpha_dir REAL_DEV/alpha
"""
import argparse
import contextlib
import io
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import composite  # noqa: E402
import data  # noqa: E402
import deploy  # noqa: E402
import metrics  # noqa: E402
import net  # noqa: E402
import synthesize  # noqa: E402

TRIVIAL = 'trivial baseline (0.5 in unknown)'
CLOSED_FORM = 'closed-form (pymatting)'


def trivial_baseline(trimap):
    """The matte of a method that knows nothing: 0.5 (128) everywhere. The metrics take the known regions from
    the trimap (metrics.fix_known), so it scores as 0.5 in the unknown region."""
    return np.full(trimap.shape, 128, np.uint8)


def closed_form(image, trimap):
    """Closed-form matting (Levin et al. 2008) by pymatting, a test/benchmark dependency only. A trimap without
    foreground (or background) pixels, which pymatting refuses, gets the solution of the same problem: a
    constant alpha, 0 (or 1), costs nothing. pymatting's notes on retrying its preconditioner are silenced."""
    import pymatting
    if not (trimap == 255).any() or not (trimap == 0).any():
        return np.where(trimap == 128, float((trimap == 255).any()), trimap / 255)
    with contextlib.redirect_stdout(io.StringIO()):
        alpha = pymatting.estimate_alpha_cf(image.astype(np.float64) / 255, trimap.astype(np.float64) / 255)
    return np.clip(alpha, 0, 1)


def warm_up_picture(size=64):
    """A small image and trimap (unknown ring, foreground inside) to run each method once before timing it."""
    image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2)
    trimap = np.zeros((size, size), np.uint8)
    trimap[size // 4:-(size // 4), size // 4:-(size // 4)] = 128
    trimap[size // 3:-(size // 3), size // 3:-(size // 3)] = 255
    return image, trimap


def precisions(device, names=None):
    """{name: dtype} of the precisions compared side by side, one entry per dtype. names: net.PRECISIONS
    ('auto' resolved on `device`); None: fp32 and the device's reduced one, on a GPU auto's (bf16, fp16
    before compute capability 8.0), on the CPU bf16 (what auto picks where the CPU has bf16 units)."""
    names = names or ['fp32', 'auto' if device.type == 'cuda' else 'bf16']
    dtypes = [net.pick_precision(name.strip(), device) for name in names]
    return {name: dtype for name, dtype in net.DTYPES.items() if dtype in dtypes}


def methods_to_compare(pred_dir=None, ckpt=None, trust=False, device=None, dtypes=None, with_closed_form=False):
    """{name: fn(stem, image, trimap) -> alpha (uint8, or float in [0, 1])}: the predictions in pred_dir, the
    checkpoint in each dtype ({name: dtype}), closed-form matting, and always the trivial baseline last. Each
    computed method runs once on a small picture first: first-call set-up (numba's, the kernels') is no
    image's cost."""
    methods = {}
    if pred_dir:
        methods['DIM (this run)'] = lambda stem, image, trimap: data.read_gray(os.path.join(pred_dir, stem + '.png'))
    if ckpt:
        model, stage = deploy.load_model(ckpt, device, trust=trust)
        for name, dtype in dtypes.items():
            deploy.predict(model, *warm_up_picture(), stage, dtype=dtype)
            methods[f'DIM stage {stage} ({os.path.basename(ckpt)}) {name}'] = \
                lambda stem, image, trimap, dtype=dtype: deploy.predict(model, image, trimap, stage, dtype=dtype)
    if with_closed_form:
        try:
            closed_form(*warm_up_picture(32))
        except ImportError:
            raise ValueError("closed-form matting needs PyMatting: pip install pymatting") from None
        methods[CLOSED_FORM] = lambda stem, image, trimap: closed_form(image, trimap)
    methods[TRIVIAL] = lambda stem, image, trimap: trivial_baseline(trimap)
    return methods


def folder_test_set(img_dir, trimap_dir, alpha_dir, max_images=None):
    """(stem, image, alpha, trimap) of the images of img_dir, their trimaps and alphas matched by file stem."""
    dataset = data.TestDataset(img_dir, trimap_dir, alpha_dir)
    for i in range(min(len(dataset), max_images or len(dataset))):
        s = dataset[i]
        yield s['name'], s['image'], s['alpha'], deploy.clean_trimap(s['trimap'])


def make_synthetic_split(folder, num_images, size=None):
    """Write a small data set into `folder` with tools/synthesize.py's defaults (so its test images are the
    first ones of a default data/synth): about num_images test composites, two backgrounds a foreground.
    size: the foregrounds' side (None: synthesize.py's default). Returns its arguments, for the record."""
    args = ['--num_train_fg', '1', '--num_bg', '1', '--num_test_fg', str(max(1, -(-num_images // 2))),
            '--num_test_bg', '2', '--sheet', '', '--workers', '1'] + (['--size', str(size)] if size else [])
    with contextlib.redirect_stdout(sys.stderr):
        if synthesize.main(['--out', folder] + args) != 0:
            raise ValueError("tools/synthesize.py failed to make the test split")
    return args


def synthetic_test_set(root, max_images=None):
    """(name, image, alpha, trimap) of the test split of a tools/synthesize.py output, composited as
    tools/composite.py composites it; the first background of every foreground first, so a few images cover
    many kinds."""
    test = os.path.join(root, 'test')
    fg_names = composite.read_names(os.path.join(test, 'fg_names.txt'))
    bg_names = composite.read_names(os.path.join(test, 'bg_names.txt'))
    if not fg_names or len(bg_names) % len(fg_names):
        raise ValueError(f"{test}: bg_names.txt lists {len(bg_names)} backgrounds for {len(fg_names)} foregrounds")
    jobs, problems, _ = composite.plan(os.path.join(test, 'fg'), os.path.join(test, 'alpha'), os.path.join(test, 'bg'),
                                       len(bg_names) // len(fg_names), fg_list=os.path.join(test, 'fg_names.txt'),
                                       bg_list=os.path.join(test, 'bg_names.txt'),
                                       trimap_dir=os.path.join(test, 'trimap'))
    if problems:
        raise ValueError(problems[0])
    order = sorted((i, k) for k, job in enumerate(jobs) for i, _ in job['pairs'])[:max_images]
    loaded = {}
    for i, k in order:
        job = jobs[k]
        if k not in loaded:
            loaded[k] = composite.read_foreground(job)
        fg, alpha, trimap = loaded[k]
        bg = dict(job['pairs'])[i]
        image = data.compose(fg, data.fit_background(data.read_image(bg), *alpha.shape), alpha).astype(np.uint8)
        yield f"{job['stem']}_{i}", image, alpha, deploy.clean_trimap(trimap)


def compare(samples, methods):
    """Mean metrics and seconds per image of each method ({name: fn(stem, image, trimap) -> alpha}) over the
    same samples (stem, image, alpha, trimap). Returns dict(images, one_sided_trimaps (with no foreground or
    no background pixel), rows: one dict a method, the header being its keys)."""
    scores = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    images = one_sided = 0
    for stem, image, alpha, trimap in samples:
        images += 1
        one_sided += not (trimap == 255).any() or not (trimap == 0).any()
        for name, fn in methods.items():
            t = time.perf_counter()
            pred = fn(stem, image, trimap)
            seconds[name] += time.perf_counter() - t
            if pred.dtype != np.uint8:
                pred = np.round(np.clip(pred, 0, 1) * 255).astype(np.uint8)
            scores[name].append(metrics.compute_all(pred, alpha, trimap))
        sads = ', '.join(f"{name.split(' ')[0]} {scores[name][-1]['sad']:.2f}" for name in methods)
        print(f"  {stem} {image.shape[1]}x{image.shape[0]}: SAD {sads}", file=sys.stderr, flush=True)
    rows = []
    for name in methods:
        means = metrics.mean_metrics(scores[name])
        rows.append({'method': name, 'SAD': means['sad'], 'MSE': means['mse'], 'GRAD': means['grad'],
                     'CONN': means['conn'], 's/image': seconds[name] / max(images, 1)})
    return dict(images=images, one_sided_trimaps=one_sided, rows=rows)


def format_rows(rows):
    """A text table of rows (dicts with the same keys: the header): floats to 4 significant digits (whole
    numbers from 1000 up), None blank; the first column left-aligned, the others right-aligned."""
    def cell(v):
        if isinstance(v, float):
            return f'{v:.0f}' if abs(v) >= 1000 else f'{v:.4g}'
        return '' if v is None else str(v)

    cells = [[str(k) for k in rows[0]]] + [[cell(v) for v in row.values()] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return '\n'.join('  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in cells)


def new_background(h, w):
    """A diagonal two-colour gradient: plain enough to show every stray hair and hole."""
    t = (np.arange(h)[:, None] / max(h - 1, 1) + np.arange(w)[None, :] / max(w - 1, 1)) / 2
    a, b = np.array([40, 110, 200], np.float32), np.array([250, 200, 60], np.float32)
    return (a * (1 - t[..., None]) + b * t[..., None]).astype(np.uint8)


def panel(image, label, height):
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    w = round(image.shape[1] * height / image.shape[0])
    image = cv2.resize(image, (w, height), interpolation=cv2.INTER_AREA).copy()
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    image[:th + 10, :tw + 10] = 0  # a dark box keeps the label readable on any panel
    cv2.putText(image, label, (5, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def picture(names, pred_dir, img_dir, trimap_dir, alpha_dir, height=220):
    rows = []
    for name in names:
        stem = os.path.splitext(name)[0]
        image = data.read_image(os.path.join(img_dir, name))
        pred = data.read_gray(os.path.join(pred_dir, stem + '.png'))
        on_new = data.compose(image, new_background(*pred.shape), pred).astype(np.uint8)
        panels = [panel(image, name, height), panel(data.read_gray(os.path.join(trimap_dir, name)), 'trimap', height),
                  panel(pred, 'predicted alpha', height)]
        if alpha_dir:
            panels.append(panel(data.read_gray(os.path.join(alpha_dir, name)), 'ground truth', height))
        panels.append(panel(on_new, 'on a new background', height))
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def get_args_parser():
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter, allow_abbrev=False)
    p.add_argument('--pred_dir', help="predicted alphas (deploy.py's --saveDir)")
    p.add_argument('--img_dir')
    p.add_argument('--trimap_dir')
    p.add_argument('--alpha_dir', help="ground truth; without it only the picture is made")
    p.add_argument('--synth_dir', help="score the test split of this tools/synthesize.py output (ROOT/test) "
                   "instead of --img_dir, --trimap_dir and --alpha_dir")
    p.add_argument('--ckpt', '--resume', help="also score this checkpoint's alpha, computed now")
    p.add_argument('--precisions', help="--ckpt: comma-separated precisions (fp32, bf16, fp16, auto: deploy.py's "
                   "--precision); None: fp32 and, on a GPU, auto's dtype, on the CPU bf16")
    p.add_argument('--trust', action='store_true', help="load --ckpt with full unpickling (trusted files only)")
    p.add_argument('--device', default='auto', help="--ckpt: 'auto' (cuda when present), 'cpu', 'cuda', 'cuda:1'")
    p.add_argument('--closed_form', action='store_true', help="also score closed-form matting (PyMatting)")
    p.add_argument('--max_images', type=int, default=None, help="score at most this many images (None: all)")
    p.add_argument('--picture', help="write the picture of --pred_dir's predictions here (PNG)")
    p.add_argument('--count', type=int, default=4, help="images in the picture")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        if not (args.synth_dir or args.img_dir and args.trimap_dir):
            raise ValueError("give --img_dir and --trimap_dir, or --synth_dir")
        if not (args.pred_dir or args.ckpt or args.closed_form):
            raise ValueError("nothing to score: give --pred_dir, --ckpt or --closed_form")
        if (args.ckpt or args.closed_form) and not (args.alpha_dir or args.synth_dir):
            raise ValueError("--ckpt and --closed_form are scored against --alpha_dir (or --synth_dir)")
        if args.picture and not (args.pred_dir and args.img_dir):
            raise ValueError("--picture draws the predictions of --pred_dir on the images of --img_dir")
        if args.alpha_dir or args.synth_dir:
            device = net.pick_device(args.device)
            dtypes = precisions(device, args.precisions and args.precisions.split(','))
            methods = methods_to_compare(args.pred_dir, args.ckpt, args.trust, device, dtypes, args.closed_form)
            samples = synthetic_test_set(args.synth_dir, args.max_images) if args.synth_dir else \
                folder_test_set(args.img_dir, args.trimap_dir, args.alpha_dir, args.max_images)
            result = compare(samples, methods)
            for row in result['rows']:
                if row['method'] == 'DIM (this run)':
                    row['s/image'] = None  # read from files: not the time of the method that made them
            print(f"{result['images']} images")
            print(format_rows(result['rows']))
            if result['one_sided_trimaps'] and args.closed_form:
                print(f"note: {result['one_sided_trimaps']} of these trimaps have no foreground (or no background) "
                      f"pixel: closed-form matting's answer there is a constant 0 (or 1)")
        if args.picture:
            names = data.list_images(args.img_dir)
            if not names:
                raise ValueError(f"{args.img_dir}: no images")
            shown = names[::max(1, len(names) // args.count)][:args.count]
            data.write_png(args.picture, picture(shown, args.pred_dir, args.img_dir, args.trimap_dir, args.alpha_dir))
            print(f"picture of {len(shown)} images: {args.picture}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
