"""Trimaps from binary masks: unknown within --band of each mask's boundary (on both sides), the mask elsewhere.

    python tools/mask2trimap.py --mask_dir masks --out_dir trimaps [--band 2%]
    python tools/mask2trimap.py --mask_dir mask.png --out_dir trimap.png

A mask is foreground where its value is >= 128 (8 or 16 bit; grayscale, or gray saved as colour). The band is
in pixels (20) or a percentage of the mask's longer side (2%). A coloured, empty or all-foreground mask is
named in one line, the other masks are still converted, and the exit status is 1. Trimaps are PNG, named
after the masks. `deploy.py --mask_dir` makes the same trimaps on the fly (data.mask_trimap).
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/mask2trimap.py`: data.py lives one folder up
    sys.path.insert(0, ROOT)
import data  # noqa: E402
import deploy  # noqa: E402


def get_args_parser():
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter, allow_abbrev=False)
    p.add_argument('--mask_dir', '--mask', required=True, help="folder of masks, or one mask")
    p.add_argument('--out_dir', '--out', '-o', required=True,
                   help="folder for the trimaps (FOLDER/stem.png) or, for one mask, a .png file")
    p.add_argument('--band', default=data.MASK_BAND,
                   help="unknown band on either side of the boundary: pixels (20) or a percentage of the "
                   "longer side (2%%)")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        data.band_pixels(args.band, (1, 1))  # a malformed --band fails before any file is read
        single = os.path.isfile(args.mask_dir)
        names = [os.path.basename(args.mask_dir)] if single else data.list_images(args.mask_dir)
        folder = os.path.dirname(args.mask_dir) if single else args.mask_dir
        if not names:
            raise ValueError(f"--mask_dir {args.mask_dir}: no images ({', '.join(data.IMAGE_EXTS)})")
        if not single and os.path.isdir(args.out_dir) and os.path.samefile(args.mask_dir, args.out_dir):
            raise ValueError(f"--out_dir {args.out_dir} is the --mask_dir folder: its files would be overwritten")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed, written = [], {}
    for name in names:
        stem = os.path.splitext(name)[0]
        path, out = os.path.join(folder, name), deploy.output_path(args.out_dir, stem, single)
        try:
            if out in written:
                raise ValueError(f"{path}: same output {out} as {written[out]}")
            mask = deploy.read_mask(path)
            data.write_png(out, data.mask_trimap(mask, data.band_pixels(args.band, mask.shape)))
            written[out] = name
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            failed.append(name)
    print(f"wrote {len(written)} of {len(names)} trimaps to {args.out_dir} (band {args.band})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
