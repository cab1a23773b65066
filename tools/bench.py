"""Speed of this Deep Image Matting project on the machine it runs on (the CPU, or a GPU where there is one).

    python tools/bench.py [--parts speed,crop,train,data,metrics,quality] [--ckpt CKPT] [--real_dir DIR]

Each speed stands beside a plain matrix product's GFLOP/s in the same dtype, measured in the same run
right before and after the timed passes (the faster of the two), because other work on a shared machine
slows both. Everything runs in this one process. Parts:
  speed    the network (stage 1: refine=False, random weights, channels_last) at each of --sizes in each of
           --precisions: best of --repeats forward passes (fewer where one is slow: --budget), its GFLOP/s
           (2 * net.count_flops / time) and share of the matrix product; deploy.predict's time (the same pass
           plus the arrays in and out); peak memory: on a GPU torch.cuda.max_memory_allocated of the pass, on
           the CPU the process's peak resident memory so far (sizes run in ascending order, so a row shows its
           own pass's peak where that pass needs more than every earlier one).
  crop     deploy.py's crop method against whole on a 1024x1024 image whose unknown ring covers 15% of it
           (--ckpt's weights, else random ones): seconds of each and the SAD between the two mattes.
  train    train.train_step (stage-1 loss, Adam) at 320x320 in each of --precisions: seconds per step (median)
           and images per second at batch 1, 2, 4, ... on a GPU, up to 256 or out of memory; at 1 and
           --max_cpu_batch on the CPU; then train.py's setup (channels_last, fused Adam) against the default
           layout and Adam, at batch 1 on the CPU and 64 on a GPU.
  data     samples per second of data.TrainDataset in this process with one thread (as one loader worker):
           320x320 samples from 1920x1080 files, first pass (decoding) and second (cached), and for
           reference the same samples with the whole image composed before cropping.
  metrics  seconds per 1024x1024 image of SAD, MSE, GRAD and CONN (metrics.py).
  quality  tools/report.py's comparison: DIM (--ckpt) in each of --precisions, closed-form matting (when
           PyMatting is installed) and the trivial baseline, on a synthetic test split (--synth_dir, else a
           small one generated with tools/synthesize.py's defaults) and on --real_dir's photographs
           (DIR/image, DIR/alpha, DIR/trimap). tools/report.py --ckpt CKPT --closed_form does it for any folders.
"""
import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tools')]

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
import deploy  # noqa: E402
import metrics  # noqa: E402
import net  # noqa: E402
import report  # noqa: E402
import train  # noqa: E402

PARTS = ('speed', 'crop', 'train', 'data', 'metrics', 'quality')
GIB = 2 ** 30


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def seconds(fn, device):
    """Wall time of one call of fn(), the device's queued work included."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def timed_passes(first_seconds, repeats, budget):
    """How many timed passes fit: `repeats`, fewer when one pass (as long as the first) would pass `budget`."""
    return max(1, min(repeats, int(budget / max(first_seconds, 1e-9))))


def matmul_gflops(device, dtype, n, repeats=3):
    """GFLOP/s of an n x n matrix product in `dtype` (best of `repeats`; on a GPU each of 10 products)."""
    inner = 10 if device.type == 'cuda' else 1
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))

    def products():
        for _ in range(inner):
            torch.mm(a, b)

    with torch.inference_mode():
        products()
        return 2 * n ** 3 * inner / min(seconds(products, device) for _ in range(repeats)) / 1e9


def peak_memory_gib(device):
    """On a GPU the peak allocated since torch.cuda.reset_peak_memory_stats; on the CPU the process's peak
    resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / GIB
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss if sys.platform == 'darwin' else rss * 1024) / GIB


def sample_matte(size, seed=0):
    """A size x size test picture: (image uint8 HxWx3, alpha uint8, trimap 0/128/255, pred uint8).

    The foreground is a blob with a wavy soft edge; the trimap's unknown band (data.band_trimap, width
    size/50) covers about 12% of the pixels; pred is the alpha with smooth errors, for timing metrics.
    """
    rng = np.random.default_rng(seed)

    def smooth(cells):  # values in [0, 1] varying over `cells` cells per side
        return cv2.resize(rng.random((cells, cells)).astype(np.float32), (size, size),
                          interpolation=cv2.INTER_CUBIC)

    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    inside = 0.3 - np.hypot(yy - 0.5, xx - 0.5) + 0.05 * (smooth(12) - 0.5)  # > 0 in the foreground
    alpha = np.clip(0.5 + inside / 0.02 + 0.6 * (smooth(64) - 0.5), 0, 1)
    alpha8 = np.round(alpha * 255).astype(np.uint8)
    trimap = data.band_trimap(alpha8, max(1, size // 50))
    pred = np.round(np.clip(alpha + 0.3 * (smooth(32) - 0.5), 0, 1) * 255).astype(np.uint8)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 3)
    return image, alpha8, trimap, pred


def machine_info(device):
    commit = 'unknown (not a git checkout)'
    with contextlib.suppress(OSError):  # no git
        out = subprocess.run(['git', 'describe', '--always', '--dirty', '--abbrev=40'], cwd=ROOT,
                             capture_output=True, text=True)
        commit = out.stdout.strip() if out.returncode == 0 else commit  # "-dirty": uncommitted changes
    return {'cpu': f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
                   f"{torch.backends.cpu.get_cpu_capability()}, torch threads {torch.get_num_threads()}",
            'device': f"{device} ({torch.cuda.get_device_name(device)})" if device.type == 'cuda' else str(device),
            'torch': f"{torch.__version__} (python {platform.python_version()})", 'commit': commit}


# ----------------------------------------------------------------------------------------------- parts
# Each returns [(title, rows)]: rows are dicts with the same keys, the table's header.

def bench_speed(sizes, device, dtypes, repeats, budget, matmul_n):
    torch.manual_seed(0)
    model = net.DIM().eval().to(device=device, memory_format=torch.channels_last)
    memory = 'peak GPU GiB' if device.type == 'cuda' else 'peak RSS so far GiB'
    rows = []
    for size in sorted(sizes):
        image, _, trimap, _ = sample_matte(size)
        img = torch.from_numpy(data.normalize(image))[None].to(device).contiguous(memory_format=torch.channels_last)
        trimap_t = torch.from_numpy(trimap[None, None].astype(np.float32)).to(device)
        flops = 2 * net.count_flops(size, size, refine=False)
        for name, dtype in dtypes.items():
            def predict():
                deploy.predict(model, image, trimap, 1, max_size=0, dtype=dtype)

            def forward():
                with torch.inference_mode(), net.autocast(device, dtype):
                    model(img, trimap_t, refine=False)

            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
            passes = timed_passes(seconds(predict, device), repeats, budget)  # also the warm-up and memory pass
            peak = peak_memory_gib(device)
            matmul = matmul_gflops(device, dtype, matmul_n)
            network = min(seconds(forward, device) for _ in range(passes))
            matmul = max(matmul, matmul_gflops(device, dtype, matmul_n))
            rows.append({'size': f'{size}x{size}', 'dtype': name, 'GFLOP': flops / 1e9,
                         'refine + %': 100 * (net.count_flops(size, size) / net.count_flops(size, size, False) - 1),
                         'network s': network, 'GFLOP/s': flops / network / 1e9, 'matmul GFLOP/s': matmul,
                         'share %': 100 * flops / network / 1e9 / matmul,
                         'predict s': min(seconds(predict, device) for _ in range(passes)), 'passes': passes,
                         memory: peak})
    return [(f"whole-image inference, stage 1 (refine=False), random weights, channels_last; matrix product "
             f"{matmul_n}^3 in the row's dtype", rows)]


def ring_matte(size, band=0.15, seed=0):
    """A size x size image and a trimap whose unknown ring (around a disc of foreground) covers `band` of it."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 3)
    yy, xx = np.mgrid[:size, :size]
    r, r0 = np.hypot(yy - size / 2, xx - size / 2), 0.3 * size
    half = band * size * size / (4 * np.pi * r0)  # ring area 2 pi r0 (2 half) = band * size^2
    trimap = np.where(r < r0 - half, 255, 0).astype(np.uint8)
    trimap[np.abs(r - r0) <= half] = 128
    return image, trimap


def bench_crop(ckpt, trust, device, size, repeats, budget):
    """deploy.py's crop method against whole: the time of each, and the SAD between the two mattes over the
    unknown region (the difference tiling makes)."""
    if ckpt:
        model, stage = deploy.load_model(ckpt, device, trust=trust)
    else:
        torch.manual_seed(0)
        model, stage = net.DIM().eval().to(device=device, memory_format=torch.channels_last), 1
    image, trimap = ring_matte(size)
    deploy.predict(model, image[:64, :64], trimap[:64, :64], stage, method='crop')  # warm-up
    alphas, times = {}, {}
    for method in ('whole', 'crop'):
        def run():
            alphas[method] = deploy.predict(model, image, trimap, stage, method=method, max_size=0, device=device)

        first = seconds(run, device)
        times[method] = min([first] + [seconds(run, device) for _ in range(timed_passes(first, repeats, budget) - 1)])
    unknown = trimap == 128
    matte = {m: np.round(a.astype(np.float64) * 255) for m, a in alphas.items()}
    row = {'whole s': times['whole'], 'crop s': times['crop'], 'speedup': times['whole'] / times['crop'],
           'SAD crop vs whole': float(np.abs(matte['crop'] - matte['whole'])[unknown].sum() / 255 / 1000)}
    weights = os.path.basename(ckpt) if ckpt else 'random weights'
    return [(f"deploy.py's crop method against whole, {size}x{size}, unknown ring {unknown.mean():.0%} of the "
             f"pixels, stage {stage}, {weights}", [row])]


def random_batch(n, size, seed=0):
    """n copies of one training sample (data.train_sample of a synthetic matte, uint8 as TrainDataset gives it;
    train.train_step composes and normalises it on the device)."""
    image, alpha, _, _ = sample_matte(size, seed)
    bg = np.ascontiguousarray(image[::-1, ::-1])  # any other picture
    sample = data.to_tensors(data.train_sample(image, alpha, bg, size, centre=0.5, flip=False, k_erode=15,
                                               k_dilate=15, size=size))
    return {k: v[None].repeat(n, *[1] * v.dim()) for k, v in sample.items()}


def time_train_steps(model, optimizer, scaler, batch, device, dtype, steps, budget, warmup):
    """(median seconds, steps timed) of train.train_step (stage 1) on `batch`, after one untimed step when
    `warmup` (it sets up the optimizer's state and the kernels: not a step's cost)."""
    def step():  # float() waits for the step to finish
        float(train.train_step(model, batch, optimizer, scaler, stage=1, wl_weight=0.5, device=device, dtype=dtype))

    first = seconds(step, device) if warmup else 0.0
    times = [seconds(step, device) for _ in range(timed_passes(first, steps, budget))]
    return float(np.median(times)), len(times)


def train_step_flops(size):
    """Floating-point operations of a stage-1 training step per size x size image: 3 forward passes (the
    backward pass costs about twice the forward)."""
    return 3 * 2 * net.count_flops(size, size, refine=False)


def train_setup(device, dtype, fast=True):
    """A stage-1 model, its Adam and GradScaler as train.py makes them (fast), or, for reference, in the default
    layout with the default Adam (`DefaultLayout` keeps train.train_step's channels_last image from switching
    the convolutions back to channels_last)."""
    torch.manual_seed(0)
    model = net.DIM()
    net.set_stage(model, 1)
    model.to(device, memory_format=torch.channels_last if fast else torch.contiguous_format).train()
    optimizer = (train.make_optimizer(model, 1e-5) if fast else
                 torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return (model if fast else DefaultLayout(model)), optimizer, scaler


class DefaultLayout(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, img, trimap, refine=True):
        return self.model(img.contiguous(), trimap, refine)


def bench_train(device, dtypes, size, steps, budget, max_cpu_batch, matmul_n, warmup, max_gpu_batch=256):
    """GFLOP/s counts a step as train_step_flops. On a GPU
    the batch sits in pinned memory, as train.py's loader gives it, and cuDNN picks its algorithms. The GPU
    search stops at 256 at the latest: far more than a user would train with, and under the 328 at which the
    pooling runs in parts (net.in_batch_parts), which would time something else."""
    rows, limits, against = [], [], []
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = not torch.are_deterministic_algorithms_enabled()  # as train.py sets it
    for name, dtype in dtypes.items():
        model, optimizer, scaler = train_setup(device, dtype)
        if device.type == 'cuda':
            batches, limit = [2 ** k for k in range(max_gpu_batch.bit_length())], f'the search cap {max_gpu_batch}'
        else:
            batches, limit = sorted({1, max_cpu_batch}), f'the CPU cap --max_cpu_batch {max_cpu_batch}, not memory'
        for n in batches:
            batch = pinned(random_batch(n, size), device)
            try:
                if device.type == 'cuda':
                    torch.cuda.reset_peak_memory_stats(device)
                matmul = matmul_gflops(device, dtype, matmul_n)
                s, timed = time_train_steps(model, optimizer, scaler, batch, device, dtype, steps, budget, warmup)
                matmul = max(matmul, matmul_gflops(device, dtype, matmul_n))
            except torch.OutOfMemoryError:
                limit = f'GPU memory (batch {n} ran out)'
                break
            finally:
                optimizer.zero_grad(set_to_none=True)
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
            rate = train_step_flops(size) * n / s / 1e9
            rows.append({'dtype': name, 'batch': n, 's/step': s, 'images/s': n / s, 'steps timed': timed,
                         'GFLOP/s (3x forward)': rate, 'matmul GFLOP/s': matmul, 'share %': 100 * rate / matmul})
            if device.type == 'cuda':
                rows[-1]['peak GPU GiB'] = peak_memory_gib(device)
        limits.append(f'{name}: {limit}')
        del model, optimizer
        n = min(64 if device.type == 'cuda' else 1, max(r['batch'] for r in rows if r['dtype'] == name))
        against.append(setup_against_default(device, name, dtype, random_batch(n, size), steps, budget, warmup))
    return [(f"train.train_step at {size}x{size}, stage-1 loss, Adam, matrix product {matmul_n}^3; the largest "
             f"batch limited by {'; '.join(limits)}", rows),
            (f"train.py's setup (channels_last, fused Adam) against the default layout and Adam, {size}x{size}, "
             f"two rounds of each, the faster kept", against)]


def pinned(batch, device):
    """`batch` in pinned memory on a GPU machine, as train.py's loader gives it."""
    return {k: v.pin_memory() for k, v in batch.items()} if device.type == 'cuda' else batch


def setup_against_default(device, name, dtype, batch, steps, budget, warmup):
    """Seconds per step of train.py's setup and of the default one on `batch`, in alternating rounds."""
    batch = pinned(batch, device)
    setups = {fast: train_setup(device, dtype, fast) for fast in (True, False)}
    times = {fast: [] for fast in setups}
    for _ in range(2):
        for fast, setup in setups.items():
            times[fast].append(time_train_steps(*setup, batch, device, dtype, steps, budget, warmup)[0])
    fast, default = min(times[True]), min(times[False])
    return {'dtype': name, 'batch': len(batch['alpha']), 'train.py s/step': fast, 'default s/step': default,
            'speedup': default / fast}


def make_sources(folder, n_fg, n_bg, h, w, seed=0):
    """Write n_fg foregrounds (PNG) with alphas and n_fg * n_bg backgrounds (JPEG, as COCO's) of h x w;
    returns TrainDataset entries, each foreground paired with n_bg backgrounds."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n_fg):
        image, alpha, _, _ = sample_matte(max(h, w), seed + i)
        fg_path, alpha_path = (os.path.join(folder, sub, f'{i:02d}.png') for sub in ('fg', 'alpha'))
        data.write_png(fg_path, image[:h, :w])
        data.write_png(alpha_path, alpha[:h, :w])
        for k in range(n_bg):
            bg = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)
            bg_path = os.path.join(folder, f'bg_{i:02d}_{k}.jpg')
            cv2.imwrite(bg_path, cv2.cvtColor(bg, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            entries.append(dict(name=f'{i:02d}_{k}', fg=fg_path, alpha=alpha_path, bg=bg_path))
    return entries


def whole_first_sample(fg, alpha, bg, unknown, draw, size):
    """The reference for data.train_sample's crop-first order: the background fitted and the whole image
    composed before the crop, then the same sample."""
    bg = data.fit_background(bg, *alpha.shape)
    data.compose(fg, bg, alpha, np.float32)
    return data.to_tensors(data.train_sample(fg, alpha, bg, draw['crop_size'], draw['centre'], draw['flip'],
                                             draw['k_erode'], draw['k_dilate'], size=size, unknown=unknown))


def bench_data(h, w, size, crop_sizes, n_fg, n_bg):
    threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)  # as in one loader worker of train.py (data.worker_init), here in this process
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix='bench_data_') as folder:
            entries = make_sources(folder, n_fg, n_bg, h, w)
            dataset = data.TrainDataset(entries, size=size, crop_sizes=crop_sizes, seed=0)
            rates = []
            for epoch in (0, 1):  # the first pass decodes the files, the second finds them in the cache
                dataset.set_epoch(epoch)
                rates.append(len(dataset) / seconds(lambda: [dataset[i] for i in range(len(dataset))],
                                                    torch.device('cpu')))
            decoded = {p: data.read_image(p) for e in entries for p in (e['fg'], e['bg'])}
            alphas = {e['alpha']: data.read_gray(e['alpha']) for e in entries}
            unknown = {p: data.unknown_pixels(a) for p, a in alphas.items()}
            whole_first = len(entries) / seconds(lambda: [
                whole_first_sample(decoded[e['fg']], alphas[e['alpha']], decoded[e['bg']], unknown[e['alpha']],
                                   dataset.draw(i), size) for i, e in enumerate(entries)], torch.device('cpu'))
    finally:
        cv2.setNumThreads(threads[0])
        torch.set_num_threads(threads[1])
    rows = [{'pass': 'first (decoding PNG/JPEG files)', 'samples/s': rates[0]},
            {'pass': 'second (decoded images cached)', 'samples/s': rates[1]},
            {'pass': 'reference: whole image composed first (cached)', 'samples/s': whole_first}]
    return [(f"data.TrainDataset, one thread, {size}x{size} samples from {w}x{h} sources, crops "
             f"{list(crop_sizes)}, {len(entries)} samples a pass", rows)]


def bench_metrics(size, repeats):
    _, alpha, trimap, pred = sample_matte(size)
    row = {}
    for name, fn in (('SAD', metrics.sad), ('MSE', metrics.mse), ('GRAD', metrics.gradient_error),
                     ('CONN', metrics.connectivity_error), ('all four', metrics.compute_all)):
        row[f'{name} s'] = min(seconds(lambda: fn(pred, alpha, trimap), torch.device('cpu')) for _ in range(repeats))
    return [(f"metrics.py, seconds per {size}x{size} image ({np.mean(trimap == 128):.0%} unknown)", [row])]


def bench_quality(ckpt, trust, synth_dir, real_dir, max_images, device, dtypes, synth_size=None):
    cudnn_benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False  # every size re-tunes
    methods = report.methods_to_compare(None, ckpt, trust, device, dtypes,
                                        with_closed_form=importlib.util.find_spec('pymatting') is not None)
    tables = []
    with tempfile.TemporaryDirectory(prefix='bench_synth_') as folder:
        source = synth_dir
        if synth_dir is None:
            source = 'generated: tools/synthesize.py ' + shlex.join(report.make_synthetic_split(folder, max_images,
                                                                                                 synth_size))
        result = report.compare(report.synthetic_test_set(synth_dir or folder, max_images), methods)
        tables.append((f"synthetic test split ({source}), {result['images']} images", result['rows']))
    if real_dir:
        result = report.compare(report.folder_test_set(*(os.path.join(real_dir, sub) for sub in
                                                         ('image', 'trimap', 'alpha')), max_images), methods)
        tables.append((f"real photographs ({os.path.basename(os.path.normpath(real_dir))}), "
                       f"{result['images']} images", result['rows']))
    torch.backends.cudnn.benchmark = cudnn_benchmark
    return tables


# -------------------------------------------------------------------------------------------- command line

def get_args_parser():
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter, allow_abbrev=False)
    p.add_argument('--parts', default=','.join(PARTS), help="comma-separated parts to run")
    p.add_argument('--sizes', type=int, nargs='+', default=None,
                   help="speed: square image sides; None: 320 800 1600 (--quick: 64)")
    p.add_argument('--ckpt', '--resume', default=None, help="crop and quality: the checkpoint (quality: no DIM "
                   "row without it)")
    p.add_argument('--trust', action='store_true', help="load --ckpt with full unpickling (trusted files only)")
    p.add_argument('--synth_dir', default=None, help="quality: a tools/synthesize.py output root (ROOT/test is "
                   "used); None: generate a small test split in a temporary folder")
    p.add_argument('--real_dir', default=None, help="quality: a folder with image/, alpha/ and trimap/ of photographs")
    p.add_argument('--max_images', type=int, default=10, help="quality: at most this many images of each set")
    p.add_argument('--json', default=None, help="also write the results as JSON to this file")
    p.add_argument('--device', default='auto', help="'auto' (cuda when present, else cpu), 'cpu', 'cuda', 'cuda:1'")
    p.add_argument('--repeats', type=int, default=3, help="timed passes per measurement (best or median of them)")
    p.add_argument('--budget', type=float, default=20,
                   help="seconds a measurement's timed passes may take: fewer passes where one is slow")
    p.add_argument('--train_size', type=int, default=None, help="train: crop side; None: 320 (--quick: 32)")
    p.add_argument('--max_cpu_batch', type=int, default=None, help="train: the largest batch tried on the CPU; "
                   "None: 8 (--quick: 2)")
    p.add_argument('--precisions', default=None, help="speed, train and quality: comma-separated precisions "
                   "compared side by side (fp32, bf16, fp16, auto: deploy.py's --precision); None: fp32 and, on "
                   "a GPU, auto's dtype, on the CPU bf16")
    p.add_argument('--deterministic', action='store_true', help="deterministic algorithms only, as train.py "
                   "--deterministic runs (compare with a run without it for the cost)")
    p.add_argument('--quick', action='store_true', help="tiny sizes everywhere (a smoke test, not a measurement)")
    return p


def check_args(args):
    """The parts to run; ValueError for a bad flag, found now rather than after minutes of other parts."""
    parts = [x.strip() for x in args.parts.split(',') if x.strip()]
    unknown = [x for x in parts if x not in PARTS]
    if unknown or not parts:
        raise ValueError(f"--parts: {', '.join(unknown) or 'none given'}; choose from {', '.join(PARTS)}")
    if args.sizes and min(args.sizes) < 32:
        raise ValueError(f"--sizes must be at least 32 (five 2x2 poolings), got {min(args.sizes)}")
    for flag, value in (('--repeats', args.repeats), ('--max_images', args.max_images)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, not {value}")
    for flag, root, sub in (('--synth_dir', args.synth_dir, 'test'), ('--real_dir', args.real_dir, 'image'),
                            ('--real_dir', args.real_dir, 'alpha'), ('--real_dir', args.real_dir, 'trimap')):
        if root is not None and not os.path.isdir(os.path.join(root, sub)):
            raise ValueError(f"{flag} {root}: has no {sub}/")
    if args.ckpt is not None and not os.path.isfile(args.ckpt):
        raise ValueError(f"--ckpt {args.ckpt}: file not found")
    return parts


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        parts = check_args(args)
        device = net.pick_device(args.device)
        dtypes = report.precisions(device, args.precisions and args.precisions.split(','))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.deterministic:
        train.use_deterministic_algorithms()
    quick = args.quick
    matmul_n = 512 if quick else 8192 if device.type == 'cuda' else 2048  # big enough to reach the peak
    jobs = dict(
        speed=lambda: bench_speed(args.sizes or ([64] if quick else [320, 800, 1600]), device, dtypes, args.repeats,
                                  args.budget, matmul_n),
        crop=lambda: bench_crop(args.ckpt, args.trust, device, 128 if quick else 1024, args.repeats, args.budget),
        train=lambda: bench_train(device, dtypes, args.train_size or (32 if quick else 320), args.repeats,
                                  args.budget, args.max_cpu_batch or (2 if quick else 8), matmul_n, warmup=not quick),
        data=lambda: bench_data(*((108, 192, 64, (64, 80, 96), 2, 2) if quick else
                                  (1080, 1920, 320, (320, 480, 640), 4, 3))),
        metrics=lambda: bench_metrics(128 if quick else 1024, args.repeats),
        quality=lambda: bench_quality(args.ckpt, args.trust, args.synth_dir, args.real_dir, args.max_images, device,
                                      dtypes, synth_size=96 if quick else None))
    started = time.time()
    results = dict(command=shlex.join(['python', 'tools/bench.py'] + (sys.argv[1:] if argv is None else argv)),
                   machine=machine_info(device))
    print('\n'.join(f"{k:8}{v}" for k, v in results['machine'].items()), flush=True)
    try:
        for part in (p for p in PARTS if p in parts):
            t = time.time()
            results[part] = [dict(title=title, rows=rows) for title, rows in jobs[part]()]
            for table in results[part]:
                print(f"\n== {part}: {table['title']} ({time.time() - t:.0f} s)\n{report.format_rows(table['rows'])}",
                      flush=True)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results['seconds'] = time.time() - started
    print(f"\n(bench took {results['seconds']:.0f} s)")
    if args.json:
        try:
            data.write_atomic(args.json, lambda f: json.dump(results, f, indent=1), text=True)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
