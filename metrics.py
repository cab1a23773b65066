"""The four Composition-1k metrics (SAD, MSE, GRAD, CONN) as the DIM authors' MATLAB evaluation computes them.

Every function takes one image's prediction, ground-truth alpha and trimap as uint8 H x W arrays (0..255).
Only the unknown region, trimap == 128, is scored. The prediction's known regions are first fixed from the
trimap (255 where trimap == 255, 0 where trimap == 0), so a raw network output and a saved deploy output
score the same. SAD, GRAD and CONN are divided by 1000, as in the published tables; MSE is not.

    python metrics.py --pred DIR --alpha DIR --trimap DIR [--csv FILE] [--workers N]

No torch and no other project module: numpy, opencv and tqdm only. So this file keeps its own copies of
data.py's file helpers (reading a gray image, the check for a truncated JPEG/PNG, the atomic writer, the
rule for two files with one stem), with the same behaviour.
"""
import argparse
import csv
import math
import contextlib
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np
from tqdm import tqdm

METRICS = ('sad', 'mse', 'grad', 'conn')
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def _check(pred, alpha, trimap):
    for name, a in (('pred', pred), ('alpha', alpha), ('trimap', trimap)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 2:
            found = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"{name}: expected a uint8 H x W array, found {found}")
    if not pred.shape == alpha.shape == trimap.shape:
        raise ValueError(f"sizes differ: pred {pred.shape}, alpha {alpha.shape}, trimap {trimap.shape}")


def fix_known(pred, trimap, fg_value=255):
    """A copy of `pred` (H x W) with fg_value where trimap == 255 and 0 where trimap == 0 (the one rule for
    known regions, also deploy.py's on float alphas with fg_value=1)."""
    pred = pred.copy()
    pred[trimap == 255] = fg_value
    pred[trimap == 0] = 0
    return pred


def _sad(pred, alpha, unknown):
    diff = pred[unknown].astype(np.int64) - alpha[unknown]
    return float(np.abs(diff).sum()) / 255 / 1000  # integer sum: exact


def _mse(pred, alpha, unknown):
    n = int(np.count_nonzero(unknown))
    if n == 0:
        return 0.0  # MATLAB divides 0 by 0 here and gives NaN
    diff = pred[unknown].astype(np.int64) - alpha[unknown]
    return float((diff * diff).sum()) / (255 * 255) / n


def _gauss_derivative_kernel(sigma=1.4, epsilon=1e-2):
    """Factors of gaussgradient.m's x kernel kx[i, j] = G(i) dG(j) (i rows, j columns, 9 x 9 at σ 1.4),
    each scaled to unit L2 norm so that their outer product has unit norm."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-u ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    dg = -u * g / sigma ** 2
    return g / np.sqrt((g * g).sum()), dg / np.sqrt((dg * dg).sum())


# kx = outer(GRAD_G, GRAD_DG) is gaussgradient.m's normalised 9 x 9 kernel (the norm of an outer product is
# the product of the norms); ky = kx transposed. Filtering with the two factors is the same sum, 10x faster.
GRAD_G, GRAD_DG = _gauss_derivative_kernel()


def _min_max(x):
    """mat2gray: linear map of min..max to 0..1 in float64; a constant map becomes 0."""
    lo, hi = int(x.min()), int(x.max())
    if lo == hi:
        return np.zeros(x.shape, np.float64)
    delta = 1.0 / (hi - lo)
    return np.clip(x * delta - lo * delta, 0.0, 1.0)


def _grad_magnitude(x):
    """|gradient| of the min-max normalised map, rounded to float32 (MATLAB's single())."""
    x = _min_max(x)
    # gaussgradient.m convolves; OpenCV correlates: only the sign of gx, gy changes, not the magnitude.
    # sepFilter2D(kernelX, kernelY): kernelX runs along rows (x, the columns index), kernelY down columns.
    gx = cv2.sepFilter2D(x, cv2.CV_64F, GRAD_DG, GRAD_G, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(x, cv2.CV_64F, GRAD_G, GRAD_DG, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy).astype(np.float32)


def _grad(pred, alpha, unknown):
    diff = _grad_magnitude(pred)[unknown].astype(np.float64) - _grad_magnitude(alpha)[unknown]
    return float((diff * diff).sum()) / 1000


# CONN thresholds t_i = i/10 compared in float32 against float32(alpha)/255, as MATLAB compares singles.
# On 8-bit alphas that is `alpha >= CONN_LEVELS[i]` with these integers (0, 26, 51, 77, 102, 128, 153, ...).
_CONN_VALUES = np.arange(256, dtype=np.float32) / np.float32(255)
CONN_LEVELS = tuple(int(np.argmax(_CONN_VALUES >= np.float32(i / 10))) for i in range(11))


def _largest_component(mask_t):
    """(labels, label of the largest 4-connected component) of mask_t, the transposed image; None if empty.

    MATLAB's bwconncomp numbers components in column-major order and max() keeps the first of equal sizes;
    labelling the transpose makes raster order column-major order, and ties go to the earliest first pixel.
    """
    n, labels = cv2.connectedComponents(mask_t.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    if n <= 1:
        return None  # nothing above the threshold in both maps: an empty omega
    sizes = np.bincount(labels.ravel(), minlength=n)[1:]
    best = np.flatnonzero(sizes == sizes.max()) + 1
    if len(best) > 1:
        flat = labels.ravel()
        best = [min(best, key=lambda k: int(np.argmax(flat == k)))]
    return labels, int(best[0])


def _conn(pred, alpha, unknown):
    # l = t_{i-1} for the first i at which a pixel is not in omega_i, 1 (= t_10) if there is none. Labelling
    # runs on the transpose, so that its order is MATLAB's.
    both = np.minimum(pred, alpha).T.copy()  # pred >= t and alpha >= t  <=>  min(pred, alpha) >= t
    level = np.full(both.shape, 10, np.uint8)  # l = level / 10
    for i in range(10, 0, -1):  # from the top, so the smallest such i is written last
        found = _largest_component(both >= CONN_LEVELS[i])
        if found is None:
            level.fill(i - 1)
        else:
            labels, best = found
            np.copyto(level, np.uint8(i - 1), where=labels != best)
    l_map = level.T[unknown] / 10
    p = pred[unknown] / 255
    g = alpha[unknown] / 255
    dp, dg = p - l_map, g - l_map
    phi_p = 1 - dp * (dp >= 0.15)
    phi_g = 1 - dg * (dg >= 0.15)
    return float(np.abs(phi_p - phi_g).sum()) / 1000


def _prepare(pred, alpha, trimap):
    _check(pred, alpha, trimap)
    return fix_known(pred, trimap), alpha, trimap == 128


def sad(pred, alpha, trimap):
    """Sum of absolute differences over trimap == 128, alphas in [0, 1], divided by 1000."""
    return _sad(*_prepare(pred, alpha, trimap))


def mse(pred, alpha, trimap):
    """Mean squared error over trimap == 128, alphas in [0, 1] (0 when there is no unknown pixel)."""
    return _mse(*_prepare(pred, alpha, trimap))


def gradient_error(pred, alpha, trimap):
    """Σ_U (|∇p| − |∇g|)² / 1000; Gaussian-derivative gradients (σ 1.4) of min-max normalised maps."""
    return _grad(*_prepare(pred, alpha, trimap))


def connectivity_error(pred, alpha, trimap):
    """Σ_U |φ(p) − φ(g)| / 1000 with thresholds 0.1 .. 1 and 4-connected largest components."""
    return _conn(*_prepare(pred, alpha, trimap))


def compute_all(pred, alpha, trimap):
    """dict(sad, mse, grad, conn) of one image (uint8 H x W arrays)."""
    args = _prepare(pred, alpha, trimap)
    return dict(sad=_sad(*args), mse=_mse(*args), grad=_grad(*args), conn=_conn(*args))


def mean_metrics(rows):
    """Mean of each metric over rows (dicts holding at least sad, mse, grad, conn); NaN when empty."""
    return {m: float(np.mean([r[m] for r in rows])) if rows else float('nan') for m in METRICS}


def format_table(results):
    """A text table of named rows of mean metrics, e.g. format_table({'DIM': means, 'baseline': means})."""
    width = max([len('method')] + [len(str(name)) for name in results])
    lines = [f"{'method':<{width}}  {'SAD':>8}  {'MSE':>8}  {'GRAD':>8}  {'CONN':>8}"]
    for name, m in results.items():
        lines.append(f"{str(name):<{width}}  {m['sad']:8.2f}  {m['mse']:8.4f}  {m['grad']:8.2f}  "
                     f"{m['conn']:8.2f}")
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------- folders

_JPEG_MARKER = re.compile(rb'\xff[^\x00\xd0-\xd7\xff]')  # data.py's copy


def _truncated(buf):
    """'JPEG' or 'PNG' when `buf` is such a file cut short, else None (data.truncated)."""
    if buf[:2] == b'\xff\xd8':
        pos = 2
        while True:
            found = _JPEG_MARKER.search(buf, pos)
            if found is None:
                return 'JPEG'
            if buf[found.start() + 1] == 0xD9:
                return None
            if found.start() + 4 > len(buf):
                return 'JPEG'
            pos = found.start() + 2 + int.from_bytes(buf[found.start() + 2:found.start() + 4], 'big')
    if buf[:8] == b'\x89PNG\r\n\x1a\n':
        pos = 8
        while pos + 8 <= len(buf):
            length, kind = int.from_bytes(buf[pos:pos + 4], 'big'), buf[pos + 4:pos + 8]
            pos += 12 + length
            if kind == b'IEND':
                return None if pos <= len(buf) else 'PNG'
        return 'PNG'
    return None


def read_alpha_file(path):
    """uint8 H x W from an 8- or 16-bit gray file (a colour file only if its channels are equal and it is
    opaque); ValueError("PATH: why") for a missing, truncated or undecodable file (data.read_gray)."""
    try:
        with open(path, 'rb') as f:
            buf = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None
    kind = _truncated(buf)
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
    if image.ndim == 3:
        c = image.shape[2]
        if c == 1:
            image = image[:, :, 0]
        elif c in (3, 4) and (np.array_equal(image[:, :, 0], image[:, :, 1])
                              and np.array_equal(image[:, :, 0], image[:, :, 2])
                              and (c == 3 or np.all(image[:, :, 3] == 255))):
            image = image[:, :, 0]
        else:
            raise ValueError(f"{path}: expected a single-channel image, found {c} different channels")
    return np.ascontiguousarray(image)


def _list_by_stem(folder):
    """({stem: file name}, {stem: message}) of the images in folder; a stem that names two or more files is
    left out, and its message names all of them (data.files_by_stem's rule)."""
    names = {}
    for f in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(f)
        if ext.lower() in IMAGE_EXTS:
            names.setdefault(stem, []).append(f)
    files = {stem: found[0] for stem, found in names.items() if len(found) == 1}
    clashes = {stem: f"{' and '.join(os.path.join(folder, f) for f in found)} have the same stem {stem!r}: which "
               f"one is meant?" for stem, found in names.items() if len(found) > 1}
    return files, clashes


def _score_one(job):
    """(name, metrics dict, None) or (name, None, error message) for one image; never raises."""
    name, pred_path, alpha_path, trimap_path = job
    try:
        pred, alpha, trimap = (read_alpha_file(p) for p in (pred_path, alpha_path, trimap_path))
        if not pred.shape == alpha.shape == trimap.shape:
            raise ValueError(f"sizes differ: {pred_path} {pred.shape[1]}x{pred.shape[0]}, "
                             f"{alpha_path} {alpha.shape[1]}x{alpha.shape[0]}, "
                             f"{trimap_path} {trimap.shape[1]}x{trimap.shape[0]} (W x H)")
        return name, compute_all(pred, alpha, trimap), None
    except Exception as e:  # one bad file must not stop the batch
        return name, None, str(e) if isinstance(e, ValueError) else f"{pred_path}: {type(e).__name__}: {e}"


def score_folder(pred_dir, alpha_dir, trimap_dir, workers=1, progress=True):
    """Score every prediction in pred_dir against the alpha and trimap of the same name (file stem).

    Returns (rows, errors): rows is a list of dict(name, sad, mse, grad, conn) sorted by name; errors is a
    list of one-line messages, each naming the file and what is wrong (missing, unreadable, not 8-bit,
    different size). Ground-truth alphas without a prediction are errors too.
    """
    for folder in (pred_dir, alpha_dir, trimap_dir):
        if not os.path.isdir(folder):
            raise ValueError(f"{folder}: not a folder")
    (preds, c1), (alphas, c2), (trimaps, c3) = (_list_by_stem(d) for d in (pred_dir, alpha_dir, trimap_dir))
    errors = [message for clashes in (c1, c2, c3) for message in clashes.values()]
    jobs = []
    for stem in sorted((set(preds) | set(alphas)) - set(c1) - set(c2) - set(c3)):  # a clash: its stem's error
        if stem not in preds:
            errors.append(f"{os.path.join(alpha_dir, alphas[stem])}: no prediction named {stem}.* "
                          f"in {pred_dir}")
        elif stem not in alphas:
            errors.append(f"{os.path.join(pred_dir, preds[stem])}: no ground-truth alpha named {stem}.* "
                          f"in {alpha_dir}")
        elif stem not in trimaps:
            errors.append(f"{os.path.join(pred_dir, preds[stem])}: no trimap named {stem}.* in {trimap_dir}")
        else:
            jobs.append((stem, os.path.join(pred_dir, preds[stem]), os.path.join(alpha_dir, alphas[stem]),
                         os.path.join(trimap_dir, trimaps[stem])))
    # disable=None: no bar when the output is not a terminal
    bar = dict(total=len(jobs), desc='scoring', unit='img', disable=None if progress else True)
    if workers > 1 and len(jobs) > 1:
        # 'spawn': a fork of a process whose OpenCV threads hold a lock can hang in the child. One OpenCV
        # thread per process: the processes already fill the cores.
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context('spawn'),
                                 initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            results = list(tqdm(pool.map(_score_one, jobs, chunksize=4), **bar))
    else:
        results = [_score_one(job) for job in tqdm(jobs, **bar)]
    rows = []
    for name, scores, error in results:
        if error is None:
            rows.append(dict(name=name, **scores))
        else:
            errors.append(error)
    return rows, errors


def write_csv(path, rows):
    """Per-image CSV with columns name,sad,mse,grad,conn, whole or not at all (data.write_atomic's rule:
    a temporary file beside it, then a rename; on failure it is removed and ValueError names the path)."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: cannot write it (a folder of that name is in the way)")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            writer = csv.writer(f)
            writer.writerow(('name',) + METRICS)
            for r in rows:
                writer.writerow([r['name']] + [repr(r[m]) for m in METRICS])
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise ValueError(f"{path}: cannot write it ({e.strerror or e})") from None
        raise


def _int_at_least_1(text):
    """An argparse type (deploy.int_at_least(1)): argparse names the flag when it is refused."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Score a folder of predicted alphas with the Composition-1k metrics (SAD, MSE, GRAD, "
                    "CONN) of the DIM authors' MATLAB evaluation. Files are matched by name (stem). Only "
                    "trimap == 128 is scored, and each prediction's known regions are first set from the "
                    "trimap (255 where trimap is 255, 0 where it is 0), so a raw network output scores the "
                    "same as a saved deploy output. SAD, GRAD and CONN are divided by 1000.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    parser.add_argument('--pred', required=True, help='folder of predicted alphas (8-bit gray images)')
    parser.add_argument('--alpha', required=True, help='folder of ground-truth alphas')
    parser.add_argument('--trimap', required=True, help='folder of trimaps (128 = unknown)')
    parser.add_argument('--csv', default=None, help='write per-image scores to this CSV file')
    parser.add_argument('--workers', type=_int_at_least_1, default=min(4, os.cpu_count() or 1),
                        help='parallel processes')
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        rows, errors = score_folder(args.pred, args.alpha, args.trimap, workers=args.workers)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.csv:
        try:
            write_csv(args.csv, rows)
        except ValueError as e:
            errors.append(str(e))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if rows:
        m = mean_metrics(rows)
        print(f"mean over {len(rows)} images: SAD {m['sad']:.2f}  MSE {m['mse']:.4f}  "
              f"GRAD {m['grad']:.2f}  CONN {m['conn']:.2f}")
    else:
        print("no image was scored", file=sys.stderr)
    if errors:
        print(f"{len(errors)} file(s) failed", file=sys.stderr)
    return 1 if errors or not rows else 0


if __name__ == '__main__':
    sys.exit(main())
