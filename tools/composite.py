"""Composite foregrounds onto backgrounds with the rule of the Composition-1k dataset's own script.

    python tools/composite.py --fg_dir ROOT/train/fg --alpha_dir ROOT/train/alpha --bg_dir ROOT/train/bg \
        --fg_names ROOT/train/fg_names.txt --bg_names ROOT/train/bg_names.txt --num_bg 100 --out_dir OUT/train
    python tools/composite.py --fg_dir ROOT/test/fg --alpha_dir ROOT/test/alpha --bg_dir ROOT/test/bg \
        --fg_names ROOT/test/fg_names.txt --bg_names ROOT/test/bg_names.txt --num_bg 20 \
        --trimap_dir ROOT/test/trimap --out_dir OUT/test

Rule: a background smaller than its foreground is upscaled (bicubic, ceil; Pillow's filter as in the dataset's
script when Pillow is installed) to cover it, never downscaled;
its top-left corner is cropped to the foreground's size; composite = a * F + (1 - a) * B in float,
a = alpha / 255, truncated to uint8 (data.fit_background, data.compose).
Pairing: with Adobe's name lists, foreground k of --fg_names gets the backgrounds on lines
k * num_bg .. k * num_bg + num_bg - 1 of --bg_names; without them the foregrounds of --fg_dir in sorted
order, foreground k getting the sorted backgrounds k * num_bg + i (cycling through them).
Output (OUT = --out_dir):
    OUT/image/{fg stem}_{i}.png    composite i of a foreground, i from 0
    OUT/alpha/{fg stem}_{i}.png    its alpha (--copy_alpha; default: when --trimap_dir is given)
    OUT/trimap/{fg stem}_{i}.png   the foreground's trimap (with --trimap_dir)
    OUT/composites.csv             name,fg,alpha,bg of every finished composite, paths relative to OUT:
                                   training recomposes crops from it (data.read_composite_list)
Every file is written whole or not at all, and a rerun skips composites whose files exist, so an
interrupted run resumes. A bad input (a listed file that is missing, an unreadable or truncated image, two
alphas or trimaps with the foreground's stem, an alpha or trimap whose size differs from its foreground, an
output that cannot be written) is reported on one line by name, the rest goes on, and the exit status is 1.
"""
import argparse
import importlib.util
import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import data  # noqa: E402
from deploy import int_at_least  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--fg_dir', required=True, help='foreground images')
    parser.add_argument('--alpha_dir', required=True, help='alphas, named as their foregrounds (or same stem)')
    parser.add_argument('--bg_dir', required=True, help='background images')
    parser.add_argument('--out_dir', required=True, help='output folder (image/, alpha/, trimap/, composites.csv)')
    parser.add_argument('--fg_names', help="foreground file names, one a line (Adobe's *_fg_names.txt); "
                        "without it every image of --fg_dir in sorted order")
    parser.add_argument('--bg_names', help="background file names, num_bg a foreground in order (Adobe's "
                        "*_bg_names.txt); without it the images of --bg_dir in sorted order, cycling")
    parser.add_argument('--num_bg', type=int_at_least(1), default=100,
                        help='backgrounds per foreground (Adobe: 100 train, 20 test)')
    parser.add_argument('--trimap_dir', help="the foregrounds' trimaps (test set), copied per composite")
    parser.add_argument('--copy_alpha', action='store_true', default=None,
                        help='write OUT/alpha/{name}.png per composite (unset: only when --trimap_dir is given)')
    parser.add_argument('--no_copy_alpha', dest='copy_alpha', action='store_false', default=argparse.SUPPRESS,
                        help='never write OUT/alpha/')
    parser.add_argument('--resize', choices=['pillow', 'opencv'],
                        default='pillow' if importlib.util.find_spec('PIL') else 'opencv',
                        help="bicubic upscaling of small backgrounds: Pillow's is the dataset script's own (use it "
                        "for test sets, `pip install pillow`); OpenCV's differs by a few levels")
    parser.add_argument('--workers', type=int_at_least(1), default=os.cpu_count() or 1, help='worker processes')
    return parser


def read_names(path):
    """Non-empty lines of a name list (UTF-8), stripped."""
    return [line.strip() for line in data.read_text(path).splitlines() if line.strip()]


def find_by_name(folder, name, files, what):
    """(`folder/name`, else the file of `folder` with the same stem, None) or (None, why not) for the
    foreground `name`; `files` is data.files_by_stem(folder)."""
    path = os.path.join(folder, name)
    if os.path.isfile(path):
        return path, None
    stem = os.path.splitext(name)[0]
    found, clashes = files
    if stem in clashes:
        return None, f"foreground {name}: no single {what}: {clashes[stem]}"
    if stem not in found:
        return None, f"foreground {name}: no {what} named like it in {folder}"
    return found[stem], None


def plan(fg_dir, alpha_dir, bg_dir, num_bg, fg_list=None, bg_list=None, trimap_dir=None):
    """(jobs, problems, failed): one job per foreground with its (i, bg path) pairs; a line for each input
    that is missing; the number of composites that cannot be made because of them. The arguments are the
    flags of the same names; fg_list, bg_list: --fg_names, --bg_names (None: list the folders)."""
    for flag, folder in (('fg_dir', fg_dir), ('alpha_dir', alpha_dir), ('bg_dir', bg_dir),
                         ('trimap_dir', trimap_dir)):
        if folder is not None and not os.path.isdir(folder):
            raise ValueError(f"--{flag} {folder}: not a folder")
    fg_names = read_names(fg_list) if fg_list else data.list_images(fg_dir)
    if not fg_names:
        raise ValueError(f"no foregrounds in {fg_list or fg_dir}")
    if bg_list:
        bg_names = read_names(bg_list)
        if len(bg_names) != len(fg_names) * num_bg:
            raise ValueError(f"--bg_names {bg_list} lists {len(bg_names)} backgrounds; expected "
                             f"{len(fg_names) * num_bg} = {len(fg_names)} foregrounds x --num_bg {num_bg}")
    else:
        listed = data.list_images(bg_dir)
        if not listed:
            raise ValueError(f"--bg_dir {bg_dir}: no images ({', '.join(data.IMAGE_EXTS)})")
        bg_names = [listed[j % len(listed)] for j in range(len(fg_names) * num_bg)]
    stems = [os.path.splitext(n)[0] for n in fg_names]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"foregrounds share a stem, so their composites would share names: {', '.join(twice)}")

    alpha_files = data.files_by_stem(alpha_dir)
    trimap_files = data.files_by_stem(trimap_dir) if trimap_dir else None
    jobs, problems, failed = [], [], 0
    for k, (name, stem) in enumerate(zip(fg_names, stems)):
        fg = os.path.join(fg_dir, name)
        alpha, no_alpha = find_by_name(alpha_dir, name, alpha_files, 'alpha')
        trimap, no_trimap = find_by_name(trimap_dir, name, trimap_files, 'trimap') if trimap_dir else (None, None)
        missing = [f"foreground {fg}: file not found" + (f" (listed in {fg_list})" if fg_list else '')
                   ] if not os.path.isfile(fg) else []
        missing += [m for m in (no_alpha, no_trimap) if m]
        if missing:
            problems += [f"{m} ({num_bg} composites of {stem} not made)" for m in missing]
            failed += num_bg
            continue
        pairs = []
        for i in range(num_bg):
            line = k * num_bg + i
            bg = os.path.join(bg_dir, bg_names[line])
            if os.path.isfile(bg):
                pairs.append((i, bg))
            else:
                problems.append(f"background {bg}: file not found (line {line + 1} of {bg_list or bg_dir}; "
                                f"composite {stem}_{i} not made)")
                failed += 1
        jobs.append(dict(index=k, stem=stem, fg=fg, alpha=alpha, trimap=trimap, pairs=pairs))
    return jobs, problems, failed


def read_foreground(job):
    """(fg, alpha, trimap or None) of a job; a size that differs from the foreground's is an error."""
    fg, alpha = data.read_image(job['fg']), data.read_gray(job['alpha'])
    trimap = data.read_gray(job['trimap']) if job['trimap'] else None
    for what, path, gray in (('alpha', job['alpha'], alpha), ('trimap', job['trimap'], trimap)):
        if gray is not None and gray.shape != fg.shape[:2]:
            raise ValueError(f"{path}: {what} is {gray.shape[1]}x{gray.shape[0]}, its foreground "
                             f"{job['fg']} is {fg.shape[1]}x{fg.shape[0]}")
    return fg, alpha, trimap


def make_composites(job, out_dir, copy_alpha, pillow=False):
    """Composites of one foreground that are not on disk yet -> (job index, finished rows, problems,
    number written). A composite counts as on disk when all its files exist (each is written whole)."""
    finished, todo, problems, written = [], [], [], 0

    def outputs(name):
        return dict(image=os.path.join(out_dir, 'image', name + '.png'),
                    alpha=os.path.join(out_dir, 'alpha', name + '.png') if copy_alpha else None,
                    trimap=os.path.join(out_dir, 'trimap', name + '.png') if job['trimap'] else None)

    for i, bg in job['pairs']:
        name = f"{job['stem']}_{i}"
        row = dict(name=name, fg=job['fg'], alpha=job['alpha'], bg=bg)
        done = all(p is None or os.path.isfile(p) for p in outputs(name).values())
        (finished if done else todo).append((i, row))
    if todo:
        try:
            fg, alpha, trimap = read_foreground(job)
        except ValueError as e:
            problems.append(f"{e} ({len(todo)} composites of {job['stem']} not made)")
            todo = []
    for i, row in todo:
        paths = outputs(row['name'])
        try:
            bg = data.fit_background(data.read_image(row['bg']), *alpha.shape, pillow=pillow)
            image = data.compose(fg, bg, alpha).astype(np.uint8)  # truncated, as the dataset's script
            if paths['alpha']:
                data.write_png(paths['alpha'], alpha)
            if paths['trimap']:
                data.write_png(paths['trimap'], trimap)
            data.write_png(paths['image'], image)
        except (ValueError, OSError) as e:
            problems.append(f"{e} (composite {row['name']} not made)")
            continue
        finished.append((i, row))
        written += 1
    return job['index'], [row for _, row in sorted(finished, key=lambda x: x[0])], problems, written


def _run(task):
    return make_composites(*task)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    copy_alpha = bool(args.trimap_dir) if args.copy_alpha is None else args.copy_alpha
    try:
        if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
            raise ValueError(f"--out_dir {args.out_dir}: a file is in the way of the folder")
        jobs, problems, failed = plan(args.fg_dir, args.alpha_dir, args.bg_dir, args.num_bg, args.fg_names,
                                      args.bg_names, args.trimap_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if args.resize == 'pillow' and not importlib.util.find_spec('PIL'):
        print("error: --resize pillow needs Pillow (pip install pillow), or use --resize opencv", file=sys.stderr)
        return 2
    tasks = [(job, args.out_dir, copy_alpha, args.resize == 'pillow') for job in jobs]
    results, written, sizes = {}, 0, {job['index']: len(job['pairs']) for job in jobs}
    bar = tqdm(total=sum(sizes.values()), unit='img', desc='composite', disable=None, dynamic_ncols=True)
    pool = multiprocessing.Pool(args.workers) if args.workers > 1 and len(tasks) > 1 else None
    try:
        for index, rows, job_problems, n in (pool.imap_unordered(_run, tasks) if pool else map(_run, tasks)):
            results[index] = rows
            written += n
            for p in job_problems:
                tqdm.write(f"error: {p}", file=sys.stderr)
            problems += job_problems
            bar.update(sizes[index])
    finally:
        bar.close()
        if pool:
            pool.terminate()
    rows = [row for index in sorted(results) for row in results[index]]
    try:
        data.write_composite_list(os.path.join(args.out_dir, data.COMPOSITE_LIST), rows)
    except ValueError as e:  # the composites on disk stay; a rerun writes the list
        print(f"error: {e}", file=sys.stderr)
        problems.append(str(e))
    failed += sum(sizes.values()) - len(rows)
    print(f"{len(rows)} composites in {args.out_dir} ({written} written now, {len(rows) - written} already there; "
          f"backgrounds upscaled with {args.resize})"
          + (f"; {failed} not made, {len(problems)} problem(s) reported above" if problems or failed else ''),
          file=sys.stderr)
    return 1 if problems or failed else 0


if __name__ == '__main__':
    sys.exit(main())
