"""Speed and quality of this Deep Image Matting project, measured side by side in one run.

    python tools/bench.py [--ckpt CKPT] [--real_dir DIR] [--json bench.json]

It runs on whatever machine it finds (the CPU, or a GPU where one exists) and puts each speed next to the
machine's own limit measured in the same run: a plain matrix product's GFLOP/s, measured right before and
after each timed pass, because other work on a shared machine slows both.

Parts (--parts):
  speed    whole-image inference at each --sizes in each of --precisions (fp32 and bf16 on the CPU, fp32 and
           auto's bf16 or fp16 on a GPU): the network's time (best of --repeats passes, fewer where one pass
           is slow: --budget) and its GFLOP/s (2 * net.count_flops / time) as a share of the matrix
           product's in the same dtype; the time of deploy.predict (the same pass plus reading the arrays
           in and out); peak memory of one deploy.predict. Each size runs in a fresh process, so its
           peak RSS (and the increase over the process before the pass) belongs to that size alone; on a GPU,
           torch.cuda.max_memory_allocated. Stage 1 (refine=False, the encoder-decoder alpha); the refiner
           adds the FLOPs shown as "refine +". Random weights: they do not change the time.
  crop     deploy.py's crop method against whole on a 1024x1024 image whose unknown band covers 15% of it
           (the --ckpt model, else random weights): seconds of each, the speedup, and the SAD between the
           two mattes over the unknown region.
  train    seconds per step and images per second at 320x320 through train.train_step (stage-1 loss,
           Adam) in each of --precisions, with its share of the matrix product in the same dtype, batch 1
           and the largest batch that fits: doubling until out of memory on a GPU (batches in pinned memory,
           as the loader gives them), capped at --max_cpu_batch on the CPU (the cap, not memory, limits it).
  data     samples per second of one loader worker (data.TrainDataset iterated in this process, one
           thread), 320x320 samples from 1920x1080 sources: first pass (decoding the files), second pass
           (decoded images cached), and, for reference, composing the whole image before cropping.
  metrics  seconds per 1024x1024 image for SAD, MSE, GRAD and CONN (metrics.py).
  quality  mean SAD, MSE, GRAD, CONN and seconds per image of DIM (--ckpt, in each of --precisions), closed-form matting
           (pymatting.estimate_alpha_cf, a test/bench dependency) and the trivial baseline (0.5 in the
           unknown region), on the same images: the synthetic test split (--synth_dir, a
           tools/synthesize.py output, composited as tools/composite.py does; by default a small one is
           generated with synthesize.py's defaults, so its images are the first ones of a default
           data/synth) and, with --real_dir, photographs laid out as DIR/image, DIR/alpha, DIR/trimap.
"""
import argparse
import contextlib
import io
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
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import composite  # noqa: E402
import data  # noqa: E402
import deploy  # noqa: E402
import metrics  # noqa: E402
import net  # noqa: E402
import report  # noqa: E402
import synthesize  # noqa: E402
import train  # noqa: E402

PARTS = ('speed', 'crop', 'train', 'data', 'metrics', 'quality')
GIB = 2 ** 30


# ------------------------------------------------------------------------------------------- helpers

def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def peak_rss():
    """Peak resident memory of this process so far, in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == 'darwin' else rss * 1024


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


def matmul_gflops(device, dtype=torch.float32, n=2048, repeats=3):
    """GFLOP/s of an n x n matrix product in `dtype` (best of `repeats`; on a GPU each of 10 products)."""
    inner = 10 if device.type == 'cuda' else 1
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    with torch.inference_mode():
        torch.mm(a, b)
        best = math.inf
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            for _ in range(inner):
                torch.mm(a, b)
            sync(device)
            best = min(best, (time.perf_counter() - t) / inner)
    return 2 * n ** 3 / best / 1e9


def bench_precisions(device, names=None):
    """The precisions (net.PRECISIONS names) the speed and train parts compare; None: fp32 and the
    reduced one of the device, side by side: on a GPU auto's (bf16, fp16 before compute capability 8.0), on
    the CPU bf16 (what auto picks where the CPU has bf16 units, measured here wherever the run is)."""
    if names is None:
        names = ['fp32', 'auto' if device.type == 'cuda' else 'bf16']
    dtypes = []
    for name in names:
        dtype = net.pick_precision(name, device)
        if dtype not in dtypes:
            dtypes.append(dtype)
    return dtypes


def dtype_name(dtype):
    return {v: k for k, v in net.DTYPES.items()}[dtype]


def matmul_size(device, quick):
    """Side of the reference matrix product: big enough to reach the device's peak (small with --quick)."""
    return 512 if quick else 8192 if device.type == 'cuda' else 2048


def timed_passes(first_seconds, repeats, budget):
    """How many timed passes fit: `repeats`, fewer when one pass (as long as the first) would pass `budget`."""
    return max(1, min(repeats, int(budget / max(first_seconds, 1e-9))))


def machine_info(device):
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    info = dict(cpu=cpu, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(), torch=torch.__version__,
                python=platform.python_version(), device=str(device), gpu=None, commit=None, uncommitted=None)
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True, timeout=30)
        if head.returncode == 0:
            info['commit'] = head.stdout.strip()
            status = subprocess.run(['git', 'status', '--porcelain'], cwd=ROOT, capture_output=True, text=True,
                                    timeout=30)
            info['uncommitted'] = bool(status.stdout.strip())  # changed or new files beside the commit
    return info


# --------------------------------------------------------------------------------------------- speed

def speed_one(size, device, dtype, repeats, budget, matmul_n):
    """One size's inference figures in `dtype` (run in a fresh process by `bench_speed`)."""
    torch.manual_seed(0)
    model = net.DIM().eval().to(device=device, memory_format=torch.channels_last)
    image, _, trimap, _ = sample_matte(size)
    stage = 1
    rss_before = peak_rss()
    if device.type == 'cuda':
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        gpu_before = torch.cuda.memory_allocated(device)
    t = time.perf_counter()
    deploy.predict(model, image, trimap, stage, max_size=0, dtype=dtype)  # the memory pass; also the warm-up
    first = time.perf_counter() - t
    row = dict(size=size, dtype=dtype_name(dtype), peak_rss_gib=peak_rss() / GIB, rss_increase_gib=(peak_rss() - rss_before) / GIB)
    if device.type == 'cuda':
        row['peak_gpu_gib'] = torch.cuda.max_memory_allocated(device) / GIB
        row['gpu_increase_gib'] = (torch.cuda.max_memory_allocated(device) - gpu_before) / GIB

    # the network alone, on inputs already on the device, as deploy.predict runs it
    img = torch.from_numpy(data.normalize(image))[None].to(device).contiguous(memory_format=torch.channels_last)
    trimap_t = torch.from_numpy(trimap[None, None].astype(np.float32)).to(device)
    flops = 2 * net.count_flops(size, size, refine=False)
    passes = timed_passes(first, repeats, budget)
    runs = []
    for _ in range(passes):
        before = matmul_gflops(device, dtype, matmul_n)
        with torch.inference_mode(), net.autocast(device, dtype):
            sync(device)
            t = time.perf_counter()
            model(img, trimap_t, refine=False)
            sync(device)
            seconds = time.perf_counter() - t
        after = matmul_gflops(device, dtype, matmul_n)
        runs.append((seconds, max(before, after)))
    seconds, matmul = min(runs)
    predict_s = math.inf
    for _ in range(passes):
        t = time.perf_counter()
        deploy.predict(model, image, trimap, stage, max_size=0, dtype=dtype)
        predict_s = min(predict_s, time.perf_counter() - t)
    row.update(gflop=flops / 1e9, refine_extra=net.count_flops(size, size) / net.count_flops(size, size, False) - 1,
               passes=passes, network_s=seconds, gflops=flops / seconds / 1e9, matmul_gflops=matmul,
               share=flops / seconds / 1e9 / matmul, predict_s=predict_s, first_s=first)
    return row


def bench_speed(sizes, device, dtypes, repeats, budget, quick):
    """Each size in each dtype (side by side), each share against the matrix product of the same dtype."""
    matmul_n = matmul_size(device, quick)
    rows = []
    for size in sizes:
        for dtype in dtypes:
            cmd = [sys.executable, os.path.abspath(__file__), '--_speed_child', str(size), '--device', str(device),
                   '--precisions', dtype_name(dtype), '--repeats', str(repeats), '--budget', str(budget)] \
                + (['--quick'] if quick else [])
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"speed at {size}x{size} in {dtype_name(dtype)} failed (exit {out.returncode}): "
                                   f"{out.stderr.strip()[-800:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  speed {size} {dtype_name(dtype)}: network {rows[-1]['network_s']:.3f} s", file=sys.stderr,
                  flush=True)
    return dict(stage=1, refine=False, model='random weights, channels_last', matmul=f'{matmul_n}^3',
                dtypes=[dtype_name(d) for d in dtypes], rows=rows)


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
    """deploy.py's crop method against whole on an image whose unknown band is 15% of it: time, and the
    SAD between the two mattes over the unknown region (the difference tiling causes). ckpt: the weights
    (None: random ones)."""
    if ckpt:
        model, stage = deploy.load_model(ckpt, device, trust=trust)
        weights = os.path.basename(ckpt)
    else:
        torch.manual_seed(0)
        model, stage, weights = net.DIM().eval().to(device=device, memory_format=torch.channels_last), 1, 'random weights'
    image, trimap = ring_matte(size)
    deploy.predict(model, image[:64, :64], trimap[:64, :64], stage, method='crop')  # warm-up
    best = {}
    for method in ('whole', 'crop'):
        t = time.perf_counter()
        alpha = deploy.predict(model, image, trimap, stage, method=method, max_size=0, device=device)
        times = [time.perf_counter() - t]
        for _ in range(timed_passes(times[0], repeats, budget) - 1):
            t = time.perf_counter()
            deploy.predict(model, image, trimap, stage, method=method, max_size=0, device=device)
            times.append(time.perf_counter() - t)
        best[method] = (min(times), np.round(alpha * 255).astype(np.uint8))
    unknown = trimap == 128
    diff = np.abs(best['crop'][1].astype(np.float64) - best['whole'][1])[unknown].sum() / 255 / 1000
    return dict(size=size, unknown=float(unknown.mean()), weights=weights, stage=stage, whole_s=best['whole'][0],
                crop_s=best['crop'][0], speedup=best['whole'][0] / best['crop'][0], sad_crop_vs_whole=diff)


# --------------------------------------------------------------------------------------------- train

def random_batch(n, size, seed=0):
    """A training batch of n copies of one sample (the dict TrainDataset gives, stacked)."""
    rng = np.random.default_rng(seed)
    _, alpha, trimap, _ = sample_matte(size, seed)
    fg = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2)
    bg = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2)
    sample = dict(img=torch.from_numpy(data.normalize(data.compose(fg, bg, alpha, np.float32))),
                  trimap=torch.from_numpy(trimap[None].astype(np.float32)),
                  alpha=torch.from_numpy(alpha[None].astype(np.float32) / 255),
                  fg=torch.from_numpy(fg.transpose(2, 0, 1).astype(np.float32) / 255),
                  bg=torch.from_numpy(bg.transpose(2, 0, 1).astype(np.float32) / 255))
    return {k: v[None].repeat(n, *[1] * v.dim()) for k, v in sample.items()}


def bench_train(device, dtypes, size, steps, budget, max_cpu_batch, matmul_n, max_gpu_batch=1024, warmup=True):
    """`bench_train_one` in each dtype, side by side."""
    rows, limited_by = [], {}
    for dtype in dtypes:
        dtype_rows, limited_by[dtype_name(dtype)] = bench_train_one(device, dtype, size, steps, budget, max_cpu_batch,
                                                                    matmul_n, max_gpu_batch, warmup)
        rows += dtype_rows
    return dict(size=size, stage=1, dtypes=[dtype_name(d) for d in dtypes], matmul=f'{matmul_n}^3', rows=rows,
                limited_by=limited_by)


def bench_train_one(device, dtype, size, steps, budget, max_cpu_batch, matmul_n, max_gpu_batch, warmup):
    """Seconds per step of train.train_step (stage 1) under autocast to `dtype` at batch 1 and the largest batch
    that fits (median of `steps` timed steps after one untimed warm-up step, or with the first step timed when
    not `warmup`), the batch in pinned memory on a GPU as train.py's loader gives it. GFLOP/s counts a step as
    3 forward passes (the backward pass costs about twice the forward), its share against the matrix product
    in `dtype`. Returns (rows, what limited the batch)."""
    torch.manual_seed(0)
    model = net.DIM()
    net.set_stage(model, 1)
    model.to(device).train()
    if device.type == 'cuda':  # as train.py sets it up
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def time_batch(n):
        batch = random_batch(n, size)
        if device.type == 'cuda':
            batch = {k: v.pin_memory() for k, v in batch.items()}
            torch.cuda.reset_peak_memory_stats(device)
        first, times = 0.0, []
        if warmup:  # the first step sets up the optimizer's state and the kernels: not a step's cost
            t = time.perf_counter()
            float(train.train_step(model, batch, optimizer, scaler, stage=1, wl_weight=0.5, device=device,
                                   dtype=dtype))
            first = time.perf_counter() - t
        before = matmul_gflops(device, dtype, matmul_n)
        for _ in range(timed_passes(first, steps, budget)):
            sync(device)
            t = time.perf_counter()
            float(train.train_step(model, batch, optimizer, scaler, stage=1, wl_weight=0.5, device=device,
                                   dtype=dtype))  # waits for it
            times.append(time.perf_counter() - t)
        matmul = max(before, matmul_gflops(device, dtype, matmul_n))
        seconds = float(np.median(times))
        rate = 3 * 2 * net.count_flops(size, size, refine=False) * n / seconds / 1e9
        row = dict(dtype=dtype_name(dtype), batch=n, s_per_step=seconds, images_per_s=n / seconds, steps=len(times), gflops=rate,
                   matmul_gflops=matmul, share=rate / matmul)
        if device.type == 'cuda':
            row['peak_gpu_gib'] = torch.cuda.max_memory_allocated(device) / GIB
        print(f"  train {dtype_name(dtype)} batch {n}: {seconds:.3f} s/step", file=sys.stderr, flush=True)
        return row

    rows = [time_batch(1)]
    if device.type == 'cuda':
        n, limited_by = 2, f'the search cap {max_gpu_batch}'
        while n <= max_gpu_batch:
            try:
                rows.append(time_batch(n))
            except torch.OutOfMemoryError:
                limited_by = f'GPU memory (batch {n} ran out)'
                break
            finally:
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
            n *= 2
    else:
        if max_cpu_batch > 1:
            rows.append(time_batch(max_cpu_batch))
        limited_by = f'the CPU cap --max_cpu_batch {max_cpu_batch}, not memory'
    return rows, limited_by


# ---------------------------------------------------------------------------------------------- data

def make_sources(folder, n_fg, n_bg, h, w, seed=0):
    """Write n_fg foregrounds (PNG) with alphas and n_fg * n_bg backgrounds (JPEG, as COCO's) of h x w;
    returns TrainDataset entries, each foreground paired with n_bg backgrounds."""
    rng = np.random.default_rng(seed)
    for sub in ('fg', 'alpha', 'bg'):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    entries = []
    for i in range(n_fg):
        image, alpha, _, _ = sample_matte(max(h, w), seed + i)
        fg, alpha = image[:h, :w], alpha[:h, :w]
        fg_path, alpha_path = (os.path.join(folder, sub, f'{i:02d}.png') for sub in ('fg', 'alpha'))
        data.write_png(fg_path, fg)
        data.write_png(alpha_path, alpha)
        for k in range(n_bg):
            bg = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)
            bg_path = os.path.join(folder, 'bg', f'{i:02d}_{k}.jpg')
            cv2.imwrite(bg_path, cv2.cvtColor(bg, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            entries.append(dict(name=f'{i:02d}_{k}', fg=fg_path, alpha=alpha_path, bg=bg_path))
    return entries


def whole_first_sample(fg, alpha, bg, unknown, d, size):
    """A sample as it costs when the whole image is composed before cropping (the reference to the
    crop-first data.train_sample, with the same draws; crops larger than the image are not handled)."""
    h, w = alpha.shape
    bg = data.fit_background(bg, h, w)
    image = data.compose(fg, bg, alpha, np.float32)  # the whole composite
    s = d['crop_size']
    cy, cx = divmod(int(unknown[min(int(d['centre'] * len(unknown)), len(unknown) - 1)]), w) if len(unknown) \
        else (h // 2, w // 2)
    top, left = data.crop_window(h, w, cy, cx, s)
    crops = [x[top:top + s, left:left + s] for x in (image, fg, bg, alpha)]
    if d['flip']:
        crops = [cv2.flip(x, 1) for x in crops]
    if s != size:
        crops = [cv2.resize(x, (size, size), interpolation=cv2.INTER_LINEAR) for x in crops]
    image, fg, bg, alpha = crops
    trimap = data.random_trimap(alpha, d['k_erode'], d['k_dilate'])
    return dict(img=torch.from_numpy(data.normalize(image)), trimap=torch.from_numpy(trimap[None].astype(np.float32)),
                alpha=torch.from_numpy(alpha[None].astype(np.float32) / 255),
                fg=torch.from_numpy(fg.transpose(2, 0, 1).astype(np.float32) / 255),
                bg=torch.from_numpy(bg.transpose(2, 0, 1).astype(np.float32) / 255))


def bench_data(quick):
    h, w, size, crops = (108, 192, 64, (64, 80, 96)) if quick else (1080, 1920, 320, (320, 480, 640))
    n_fg, n_bg = (2, 2) if quick else (4, 3)
    threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)  # as in one loader worker of train.py (data.worker_init), here in this process
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix='bench_data_') as folder:
            entries = make_sources(folder, n_fg, n_bg, h, w)
            dataset = data.TrainDataset(entries, size=size, crop_sizes=crops, seed=0)
            rates = []
            for epoch in (0, 1):  # the first pass decodes the files, the second finds them in the cache
                dataset.set_epoch(epoch)
                t = time.perf_counter()
                for i in range(len(dataset)):
                    dataset[i]
                rates.append(len(dataset) / (time.perf_counter() - t))
            decoded = {p: data.read_image(p) for e in entries for p in (e['fg'], e['bg'])}
            alphas = {e['alpha']: data.read_gray(e['alpha']) for e in entries}
            unknown = {p: data.unknown_pixels(a) for p, a in alphas.items()}
            t = time.perf_counter()
            for i, e in enumerate(entries):
                whole_first_sample(decoded[e['fg']], alphas[e['alpha']], decoded[e['bg']], unknown[e['alpha']],
                                   dataset.draw(i), size)
            whole_first = len(entries) / (time.perf_counter() - t)
    finally:
        cv2.setNumThreads(threads[0])
        torch.set_num_threads(threads[1])
    print(f"  data: {rates[1]:.1f} samples/s (cached)", file=sys.stderr, flush=True)
    return dict(source=f'{w}x{h}', size=size, crop_sizes=list(crops), samples=len(entries),
                first_pass_per_s=rates[0], cached_per_s=rates[1], whole_first_cached_per_s=whole_first)


# ------------------------------------------------------------------------------------------- metrics

def bench_metrics(size, repeats):
    _, alpha, trimap, pred = sample_matte(size)
    out = dict(size=size, unknown=float(np.mean(trimap == 128)))
    for name, fn in (('sad', metrics.sad), ('mse', metrics.mse), ('grad', metrics.gradient_error),
                     ('conn', metrics.connectivity_error), ('all', metrics.compute_all)):
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            fn(pred, alpha, trimap)
            best = min(best, time.perf_counter() - t)
        out[f'{name}_s'] = best
    print(f"  metrics: {out['all_s']:.3f} s per image", file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------------------------------- quality

def synthetic_test_set(root, max_images):
    """(name, image, alpha, trimap) of the synthetic test split's composites, made as tools/composite.py
    makes them; the first background of every foreground first, so a few images cover many kinds."""
    test = os.path.join(root, 'test')
    fg_names = composite.read_names(os.path.join(test, 'fg_names.txt'))
    bg_names = composite.read_names(os.path.join(test, 'bg_names.txt'))
    if not fg_names or len(bg_names) % len(fg_names):
        raise ValueError(f"{test}: bg_names.txt lists {len(bg_names)} backgrounds for {len(fg_names)} foregrounds")
    num_bg = len(bg_names) // len(fg_names)
    jobs, problems, _ = composite.plan(os.path.join(test, 'fg'), os.path.join(test, 'alpha'), os.path.join(test, 'bg'),
                                       num_bg, fg_list=os.path.join(test, 'fg_names.txt'),
                                       bg_list=os.path.join(test, 'bg_names.txt'),
                                       trimap_dir=os.path.join(test, 'trimap'))
    if problems:
        raise ValueError(problems[0])
    order = sorted(((i, k) for k, job in enumerate(jobs) for i, _ in job['pairs']))[:max_images]
    loaded = {}
    for i, k in order:
        job = jobs[k]
        if k not in loaded:
            loaded[k] = composite.read_foreground(job)
        fg, alpha, trimap = loaded[k]
        bg = dict(job['pairs'])[i]
        image = data.compose(fg, data.fit_background(data.read_image(bg), *alpha.shape), alpha).astype(np.uint8)
        yield f"{job['stem']}_{i}", image, alpha, deploy.clean_trimap(trimap)


def real_test_set(folder, max_images):
    dataset = data.TestDataset(os.path.join(folder, 'image'), os.path.join(folder, 'trimap'),
                               os.path.join(folder, 'alpha'))
    for i in range(min(len(dataset), max_images)):
        s = dataset[i]
        yield s['name'], s['image'], s['alpha'], deploy.clean_trimap(s['trimap'])


def closed_form(image, trimap):
    """Closed-form matting (Levin et al. 2008) by pymatting, a test/bench dependency only. A trimap without
    foreground (or background) pixels, which pymatting refuses, gets the solution of the same problem: a
    constant alpha, 0 (or 1), costs nothing. pymatting's notes on retrying its preconditioner are silenced."""
    import pymatting
    if not (trimap == 255).any() or not (trimap == 0).any():
        return np.where(trimap == 128, float((trimap == 255).any()), trimap / 255)
    with contextlib.redirect_stdout(io.StringIO()):
        alpha = pymatting.estimate_alpha_cf(image.astype(np.float64) / 255, trimap.astype(np.float64) / 255)
    return np.clip(alpha, 0, 1)


def quality(samples, methods):
    """Mean metrics and seconds per image of each method (name -> fn(image, trimap) -> alpha in [0, 1] or
    uint8) over the same samples."""
    scores = {name: [] for name in methods}
    seconds = {name: 0.0 for name in methods}
    names, one_sided = [], 0
    for name, image, alpha, trimap in samples:
        names.append(name)
        one_sided += not (trimap == 255).any() or not (trimap == 0).any()
        line = []
        for method, fn in methods.items():
            t = time.perf_counter()
            pred = fn(image, trimap)
            seconds[method] += time.perf_counter() - t
            if pred.dtype != np.uint8:
                pred = np.round(np.clip(pred, 0, 1) * 255).astype(np.uint8)
            scores[method].append(metrics.compute_all(pred, alpha, trimap))
            line.append(f"{method.split(' ')[0]} {scores[method][-1]['sad']:.2f}")
        print(f"  {name} {image.shape[1]}x{image.shape[0]}: SAD {', '.join(line)}", file=sys.stderr, flush=True)
    out = {}
    for method in methods:
        out[method] = metrics.mean_metrics(scores[method])
        out[method]['s_per_image'] = seconds[method] / max(len(names), 1)
    return dict(images=len(names), names=names, methods=out, one_sided_trimaps=one_sided)


def bench_quality(ckpt, trust, synth_dir, real_dir, max_images, quick, device, dtypes):
    """Mean metrics and seconds per image of DIM (ckpt), closed-form matting and the trivial baseline on the
    synthetic test split (synth_dir, or one generated now) and the real photographs of real_dir, at most
    max_images of each. The DIM rows once per dtype (the same model; each image goes through them one after
    the other)."""
    torch.backends.cudnn.benchmark = False  # the train part sets it; here every image size would re-tune
    notes, methods = [], {}
    if ckpt:
        model, stage = deploy.load_model(ckpt, device, trust=trust)
        image, _, trimap, _ = sample_matte(64)
        for dtype in dtypes:
            deploy.predict(model, image, trimap, stage, dtype=dtype)  # warm-up: first-call set-up is no image's cost
            methods[f'DIM stage {stage} ({os.path.basename(ckpt)}) {dtype_name(dtype)}'] = \
                lambda image, trimap, dtype=dtype: deploy.predict(model, image, trimap, stage, device=device,
                                                                  dtype=dtype)
    else:
        notes.append("no --ckpt: the DIM row is left out")
    try:
        import pymatting  # noqa: F401
        image, _, trimap, _ = sample_matte(32)
        closed_form(image, trimap)  # warm-up: numba loads (or compiles) its functions on the first call
        methods['closed-form (pymatting)'] = closed_form
    except ImportError:
        notes.append("pymatting is not installed (pip install -r requirements-dev.txt): no closed-form row")
    methods['trivial (0.5 in unknown)'] = lambda image, trimap: report.trivial_baseline(trimap)
    out = dict(notes=notes)
    with contextlib.ExitStack() as stack:
        root = synth_dir
        if root is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix='bench_synth_'))
            num_fg = max(1, math.ceil(max_images / 2))
            gen = ['--out', root, '--num_train_fg', '1', '--num_bg', '1', '--num_test_fg', str(num_fg),
                   '--num_test_bg', '2', '--sheet', '', '--workers', '1'] + (['--size', '96'] if quick else [])
            with contextlib.redirect_stdout(sys.stderr):
                if synthesize.main(gen) != 0:
                    raise RuntimeError("tools/synthesize.py failed to make the test split")
            out['synthetic_source'] = f"generated: tools/synthesize.py {shlex.join(gen[2:])}"
        else:
            out['synthetic_source'] = root
        out['synthetic'] = quality(synthetic_test_set(root, max_images), methods)
    if real_dir:
        out['real'] = quality(real_test_set(real_dir, max_images), methods)
        out['real_source'] = os.path.basename(os.path.normpath(real_dir))
    return out


# -------------------------------------------------------------------------------------------- output

def fmt_table(header, rows):
    """Right-aligned columns (the first left-aligned) under a header."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return '\n'.join('  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in cells)


def format_machine(m):
    gpu = f" ({m['gpu']})" if m['gpu'] else ''
    changes = " + uncommitted changes" if m['uncommitted'] else ''
    return ["== machine",
            f"cpu     {m['cpu']}; {m['cpu_count']} logical cores, torch threads {m['torch_threads']}, "
            f"capability {m['cpu_capability']}",
            f"torch   {m['torch']} (python {m['python']}), device {m['device']}{gpu}",
            f"commit  {m['commit'] or 'unknown (not a git checkout)'}{changes}"]


def format_speed(s):
    out = [f"\n== speed: whole-image inference, stage {s['stage']} (encoder-decoder only, refine=False), "
           f"{s['model']}, {' and '.join(s['dtypes'])} (autocast); share: against the matrix product in "
           f"the row's dtype"]
    gpu = any('peak_gpu_gib' in r for r in s['rows'])
    header = ['size', 'dtype', 'GFLOP', 'refine +', 'network s', 'GFLOP/s', f"matmul GFLOP/s ({s['matmul']})",
              'share', 'predict s', 'passes', 'peak RSS GiB', 'RSS increase GiB']
    header += ['GPU peak GiB', 'GPU increase GiB'] if gpu else []
    rows = []
    for r in s['rows']:
        row = [f"{r['size']}x{r['size']}", r['dtype'], f"{r['gflop']:.1f}", f"{r['refine_extra']:.1%}",
               f"{r['network_s']:.3f}", f"{r['gflops']:.1f}", f"{r['matmul_gflops']:.1f}", f"{r['share']:.0%}",
               f"{r['predict_s']:.3f}", r['passes'], f"{r['peak_rss_gib']:.2f}", f"{r['rss_increase_gib']:.2f}"]
        if gpu:
            row += [f"{r.get('peak_gpu_gib', 0):.2f}", f"{r.get('gpu_increase_gib', 0):.2f}"]
        rows.append(row)
    out.append(fmt_table(header, rows))
    return out


def format_crop(c):
    return [f"\n== crop: deploy.py's crop method against whole, {c['size']}x{c['size']}, unknown band "
            f"{c['unknown']:.0%} of the pixels, stage {c['stage']}, {c['weights']}",
            fmt_table(['whole s', 'crop s', 'speedup', 'SAD(crop vs whole)'],
                      [[f"{c['whole_s']:.2f}", f"{c['crop_s']:.2f}", f"{c['speedup']:.2f}x",
                        f"{c['sad_crop_vs_whole']:.3f}"]])]


def format_train(t):
    gpu = any('peak_gpu_gib' in r for r in t['rows'])
    header = ['dtype', 'batch', 's/step', 'images/s', 'steps timed', 'GFLOP/s (3x forward)',
              f"matmul GFLOP/s ({t['matmul']})", 'share'] + (['GPU peak GiB'] if gpu else [])
    rows = [[r['dtype'], r['batch'], f"{r['s_per_step']:.3f}", f"{r['images_per_s']:.2f}", r['steps'],
             f"{r['gflops']:.1f}", f"{r['matmul_gflops']:.1f}", f"{r['share']:.0%}"]
            + ([f"{r['peak_gpu_gib']:.2f}"] if gpu else []) for r in t['rows']]
    return [f"\n== train: train.train_step at {t['size']}x{t['size']}, stage-{t['stage']} loss, Adam, "
            f"{' and '.join(t['dtypes'])} (autocast); largest batch limited by "
            f"{'; '.join(f'{k}: {v}' for k, v in t['limited_by'].items())}",
            fmt_table(header, rows)]


def format_data(d):
    return [f"\n== data: one loader worker (one thread), {d['size']}x{d['size']} samples from {d['source']} "
            f"sources, crops {d['crop_sizes']}, {d['samples']} samples a pass",
            fmt_table(['pass', 'samples/s'], [
                ['first (decoding PNG/JPEG files)', f"{d['first_pass_per_s']:.1f}"],
                ['second (decoded images cached)', f"{d['cached_per_s']:.1f}"],
                ['reference: whole image composed first (cached)', f"{d['whole_first_cached_per_s']:.1f}"]])]


def format_metrics(x):
    return [f"\n== metrics: seconds per {x['size']}x{x['size']} image ({x['unknown']:.0%} unknown)",
            fmt_table(['SAD', 'MSE', 'GRAD', 'CONN', 'all four (compute_all)'],
                      [[f"{x[k + '_s']:.4f}" for k in ('sad', 'mse', 'grad', 'conn', 'all')]])]


def format_quality(q):
    out = []
    for key, title in (('synthetic', f"synthetic test split ({q.get('synthetic_source')})"),
                       ('real', f"real photographs ({q.get('real_source')})")):
        if key not in q:
            continue
        out.append(f"\n== quality: {title}, {q[key]['images']} images")
        out.append(fmt_table(['method', 'SAD', 'MSE', 'GRAD', 'CONN', 's/image'], [
            [name, f"{r['sad']:.2f}", f"{r['mse']:.4f}", f"{r['grad']:.2f}", f"{r['conn']:.2f}",
             f"{r['s_per_image']:.3f}"] for name, r in q[key]['methods'].items()]))
        if q[key]['one_sided_trimaps']:
            out.append(f"note: {q[key]['one_sided_trimaps']} of these trimaps have no foreground (or no "
                       f"background) pixel: closed-form matting's answer there is a constant 0 (or 1)")
    for note in q['notes']:
        out.append(f"note: {note}")
    return out


FORMATS = dict(speed=format_speed, crop=format_crop, train=format_train, data=format_data, metrics=format_metrics,
               quality=format_quality)


def format_report(results):
    """The printed report: the machine, then each part that ran, in PARTS order."""
    out = format_machine(results['machine'])
    for part in PARTS:
        if part in results:
            out += FORMATS[part](results[part])
    return '\n'.join(out)


# -------------------------------------------------------------------------------------- command line

def get_args_parser():
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter, allow_abbrev=False)
    p.add_argument('--parts', default=','.join(PARTS), help="comma-separated parts to run")
    p.add_argument('--sizes', type=int, nargs='+', default=None,
                   help="speed: square image sides; None: 320 800 1600 (--quick: 64)")
    p.add_argument('--ckpt', '--resume', default=None, help="quality: the checkpoint to score (no DIM row without it)")
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
    p.add_argument('--precisions', default=None, help="speed and train: comma-separated precisions compared side "
                   "by side (fp32, bf16, fp16, auto: deploy.py's --precision); None: fp32 and, on a GPU, auto's "
                   "dtype, on the CPU bf16")
    p.add_argument('--quick', action='store_true', help="tiny sizes everywhere (a smoke test, not a measurement)")
    p.add_argument('--_speed_child', type=int, default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        device = net.pick_device(args.device)
        dtypes = bench_precisions(device, args.precisions and [x.strip() for x in args.precisions.split(',')])
        parts = [x.strip() for x in args.parts.split(',') if x.strip()]
        unknown = [x for x in parts if x not in PARTS]
        if unknown or not parts:
            raise ValueError(f"--parts: {', '.join(unknown) or 'none given'}; choose from {', '.join(PARTS)}")
        sizes = args.sizes or ([64] if args.quick else [320, 800, 1600])
        if min(sizes) < 32:
            raise ValueError(f"--sizes must be at least 32 (five 2x2 poolings), got {min(sizes)}")
        for flag, value in (('--repeats', args.repeats), ('--max_images', args.max_images)):
            if value < 1:
                raise ValueError(f"{flag} must be at least 1, not {value}")
        needed = [('--synth_dir', args.synth_dir, os.path.join('test', name)) for name in
                  ('fg', 'alpha', 'bg', 'trimap', 'fg_names.txt', 'bg_names.txt')]
        needed += [('--real_dir', args.real_dir, name) for name in ('image', 'alpha', 'trimap')]
        for flag, root, name in needed:  # found now, not after minutes of the other parts
            if root is not None and not os.path.exists(os.path.join(root, name)):
                raise ValueError(f"{flag} {root}: has no {name}")
        if args.ckpt is not None and not os.path.isfile(args.ckpt):
            raise ValueError(f"--ckpt {args.ckpt}: file not found")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args._speed_child is not None:  # one size of the speed part, in a fresh process
        print(json.dumps(speed_one(args._speed_child, device, dtypes[0], args.repeats, args.budget,
                                   matmul_size(device, args.quick))))
        return 0
    train_size = args.train_size or (32 if args.quick else 320)
    max_cpu_batch = args.max_cpu_batch or (2 if args.quick else 8)

    started = time.time()
    results = dict(machine=machine_info(device))
    print(f"bench: {', '.join(parts)} on {device}", file=sys.stderr, flush=True)
    try:
        jobs = dict(speed=lambda: bench_speed(sizes, device, dtypes, args.repeats, args.budget, args.quick),
                    crop=lambda: bench_crop(args.ckpt, args.trust, device, 128 if args.quick else 1024, args.repeats,
                                            args.budget),
                    train=lambda: bench_train(device, dtypes, train_size, args.repeats, args.budget, max_cpu_batch,
                                              matmul_size(device, args.quick), warmup=not args.quick),
                    data=lambda: bench_data(args.quick),
                    metrics=lambda: bench_metrics(128 if args.quick else 1024, args.repeats),
                    quality=lambda: bench_quality(args.ckpt, args.trust, args.synth_dir, args.real_dir,
                                                  args.max_images, args.quick, device, dtypes))
        for part in PARTS:
            if part in parts:
                t = time.time()
                results[part] = jobs[part]()
                results[part]['part_seconds'] = time.time() - t
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results['seconds'] = time.time() - started
    results['command'] = shlex.join(['python', 'tools/bench.py'] + (sys.argv[1:] if argv is None else argv))
    print(format_report(results))
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
