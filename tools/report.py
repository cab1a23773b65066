"""Score a folder of predicted alphas next to the trivial baseline, and draw a picture of a few.

The trivial baseline predicts 0.5 everywhere in the unknown region (known regions from the trimap).
The picture shows, per image: the image, the trimap, the predicted alpha, the ground truth, and the
subject placed on a new background with the predicted alpha (the image itself stands in for the
foreground colour, as it would for a user's photo).

  python tools/report.py --pred_dir results/demo --img_dir data/demo/test/image \
      --trimap_dir data/demo/test/trimap --alpha_dir data/demo/test/alpha --picture results/demo.png
"""
import argparse
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import metrics  # noqa: E402


def trivial_baseline(trimap):
    """The matte of a method that knows nothing: 0.5 (128) everywhere. The metrics take the known regions from
    the trimap (metrics.fix_known), so it scores as 0.5 in the unknown region."""
    return np.full(trimap.shape, 128, np.uint8)


def score(names, pred_dir, trimap_dir, alpha_dir):
    """Mean metrics of the predictions and of the trivial baseline over the same images."""
    ours, baseline = [], []
    for name in names:
        stem = os.path.splitext(name)[0]
        trimap = data.read_gray(os.path.join(trimap_dir, name))
        alpha = data.read_gray(os.path.join(alpha_dir, name))
        pred = data.read_gray(os.path.join(pred_dir, stem + '.png'))
        ours.append(metrics.compute_all(pred, alpha, trimap))
        baseline.append(metrics.compute_all(trivial_baseline(trimap), alpha, trimap))
    return metrics.mean_metrics(ours), metrics.mean_metrics(baseline)


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pred_dir', required=True, help="predicted alphas (deploy.py's --saveDir)")
    p.add_argument('--img_dir', required=True)
    p.add_argument('--trimap_dir', required=True)
    p.add_argument('--alpha_dir', help="ground truth; without it only the picture is made")
    p.add_argument('--picture', help="write the picture here (PNG)")
    p.add_argument('--count', type=int, default=4, help="images in the picture (default 4)")
    args = p.parse_args(argv)
    try:
        names = data.list_images(args.img_dir)
        if not names:
            raise ValueError(f"{args.img_dir}: no images")
        if args.alpha_dir:
            ours, baseline = score(names, args.pred_dir, args.trimap_dir, args.alpha_dir)
            print(f"{len(names)} images")
            print(metrics.format_table({'DIM (this run)': ours, 'trivial baseline (0.5 in unknown)': baseline}))
        if args.picture:
            step = max(1, len(names) // args.count)
            shown = names[::step][:args.count]
            data.write_png(args.picture, picture(shown, args.pred_dir, args.img_dir, args.trimap_dir, args.alpha_dir))
            print(f"picture of {len(shown)} images: {args.picture}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
