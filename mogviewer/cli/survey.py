"""The survey-scale options of ``mogviewer fit``: manifests, catalogue mode, executors, resume.

Three ways to name what to fit (exactly one):

* ``FILE ...``: one cutout per file, the options for all of them;
* ``--manifest objects.csv`` (CSV, ECSV or FITS table): one row per object with its own image,
  noise, mask or segmentation map, PSF, centre and options (:mod:`mogviewer.io.manifest`);
* ``--image field.fits --catalog sources.fits [--weight weight.fits] [--psf field.psfex]``:
  one cutout per catalogue source, made in memory from the memory-mapped field
  (:mod:`mogviewer.batch.cutouts`).

Where the fits run: ``--workers N`` local processes (default 1), ``--dask`` (a Dask
``LocalCluster`` of ``--workers`` processes) or ``--scheduler tcp://host:port`` (a running Dask
cluster, e.g. from dask-jobqueue). ``--resume`` continues an interrupted run: the ids already
in ``--csv`` are not fitted again. ``--table out.fits`` (or ``.ecsv``, ``.parquet``) also writes
the whole CSV as a typed table at the end.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from pathlib import Path

from ..errors import UserError
from . import options as opt

#: FitTask fields a manifest column may not set (the run's outputs and ids are set otherwise).
_NOT_PER_OBJECT = ("object_id", "output_name", "centre", "psf_position")

#: Extension -> astropy format of ``--table``.
TABLE_FORMATS = {".fits": "fits", ".fit": "fits", ".ecsv": "ascii.ecsv",
                 ".parquet": "parquet"}


def register(p):
    """Add the survey options to the ``fit`` parser."""
    g = p.add_argument_group("survey scale (manifests, catalogues, clusters)")
    g.add_argument("--manifest", metavar="TABLE",
                   help="a table (CSV, ECSV, FITS) with one row per object: image, noise, "
                        "noise_kind, mask, segmap, psf, x/y (or x_fits/y_fits), profile, ... "
                        "and an id column; relative paths are resolved against the manifest's "
                        "directory; empty cells take the command line's value")
    g.add_argument("--image", metavar="FIELD",
                   help="catalogue mode: the large image (FITS, read memory-mapped)")
    g.add_argument("--catalog", metavar="TABLE",
                   help="catalogue mode: sources with ra/dec (through the image's WCS), x/y "
                        "(0-based) or x_image/y_image (SExtractor, 1-based) and an id column")
    g.add_argument("--weight", metavar="FITS",
                   help="catalogue mode: the inverse-variance weight map of --image "
                        "(default: the noise of each cutout from its background)")
    g.add_argument("--weight-hdu", type=opt.hdu, help="HDU of --weight")
    g.add_argument("--cutout-size", type=opt.int_range(8, 4096), metavar="PIX",
                   help="catalogue mode: cutout side in pixels (default: --size-factor times "
                        "the --size-column, within 32-256, or 32)")
    g.add_argument("--size-column", metavar="NAME",
                   help="catalogue column with each source's size in pixels (e.g. "
                        "flux_radius)")
    g.add_argument("--size-factor", type=opt.positive_float, default=10.0,
                   help="cutout side = this times the size column (default 10)")
    g.add_argument("--psf-cell", type=opt.int_range(16, 100000), default=512, metavar="PIX",
                   help="catalogue mode: the PSF is evaluated and fitted once per square cell "
                        "of this many pixels, at its sources' mean position (default 512)")
    g.add_argument("--neighbour-radius", type=opt.positive_float, default=4.0, metavar="PIX",
                   help="catalogue mode: other sources are masked within this radius (or 1.5 "
                        "times their size), where nearer to them than to the target")
    # (batch.cutouts.CENTRE_BOX, written out: this module imports nothing heavy at start-up;
    # tests/test_catalog.py checks the two agree)
    g.add_argument("--centre-box", type=opt.nonnegative_float, default=3.0, metavar="PIX",
                   help="catalogue mode: the fitted centre stays within PIX pixels of the "
                        "catalogue position in x and y (default 3; 0 leaves it free); a centre "
                        "at the box's edge is flagged AT_BOUND. Without it a faint source "
                        "beside a bright one can run onto it")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: append to --csv and skip the objects "
                        "(ids) already in it")
    g.add_argument("--dask", action="store_true",
                   help="run on a Dask LocalCluster of --workers processes")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a running Dask cluster (tcp://host:port)")
    g.add_argument("--table", metavar="PATH",
                   help="also write all rows as a typed table at the end: .fits, .ecsv or "
                        ".parquet (astropy; parquet needs pyarrow)")


def mode(args):
    """``'files'``, ``'manifest'`` or ``'catalog'``, after checking the options agree."""
    cat = args.image is not None or args.catalog is not None
    bands = bool(getattr(args, "bands", None))
    given = [name for name, on in (("FILE arguments" + (" or --bands" if bands else ""),
                                    bool(args.files) or bands),
                                   ("--manifest", args.manifest is not None),
                                   ("--image/--catalog", cat)) if on]
    if len(given) > 1:
        raise UserError(f"give one of FILE arguments, --manifest or --image with --catalog, "
                        f"not {' and '.join(given)}")
    if not given:
        raise UserError("nothing to fit: give FILE arguments, --manifest TABLE, or --image "
                        "FIELD with --catalog TABLE")
    if cat and (args.image is None or args.catalog is None):
        raise UserError("catalogue mode needs both --image FIELD and --catalog TABLE")
    if not cat:
        for o in ("weight", "weight_hdu", "cutout_size", "size_column"):
            if getattr(args, o) is not None:
                raise UserError(f"--{o.replace('_', '-')} applies to catalogue mode "
                                "(--image with --catalog) only")
    else:
        for o in ("noise", "mask", "segmap", "start", "centre", "psf_position", "plane",
                  "band"):
            if getattr(args, o, None) is not None:
                raise UserError(f"--{o.replace('_', '-')} does not apply to catalogue mode: "
                                "the cutouts come from --image (noise from --weight, "
                                "neighbours from the catalogue, PSF positions from the "
                                "sources)")
        if getattr(args, "neighbours", "ignore") != "ignore":
            raise UserError("--neighbours does not apply to catalogue mode: the catalogue's "
                            "other sources are masked (--neighbour-radius)")
        for o in ("imgblock", "region", "model_json", "sample"):
            if getattr(args, o, None):
                raise UserError(f"--{o.replace('_', '-')} is not available in catalogue mode "
                                "yet (one CSV row per source); fit a --manifest of cutouts "
                                "for per-object files or posteriors")
    if args.scheduler is not None and not args.scheduler.strip():
        raise UserError("--scheduler: give the scheduler's address, e.g. tcp://host:8786")
    if args.table is not None:
        suffix = Path(args.table).suffix.lower()
        if suffix not in TABLE_FORMATS:
            raise UserError(f"--table {args.table}: choose a .fits, .ecsv or .parquet name")
        if suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UserError("--table .parquet needs pyarrow (pip install pyarrow); or "
                                "write .fits or .ecsv") from None
    if args.dask or args.scheduler:
        try:
            import dask.distributed  # noqa: F401
        except ImportError:
            raise UserError("--dask/--scheduler need dask.distributed: pip install "
                            "'mogviewer[cluster]'") from None
    return "catalog" if cat else ("manifest" if args.manifest is not None else "files")


def input_options(args):
    """``(option, path)`` of the survey options' input files."""
    return [("--manifest", args.manifest), ("--image", args.image), ("--catalog", args.catalog),
            ("--weight", args.weight)]


def manifest_tasks(args, template):
    """One FitTask per manifest row: the row's cells over the command line's options."""
    import dataclasses

    from ..batch import FitTask
    from ..io.manifest import read_manifest

    fields = [f.name for f in dataclasses.fields(FitTask) if f.name not in _NOT_PER_OBJECT]
    rows = read_manifest(args.manifest, fields=fields)
    tasks = []
    for r, (oid, kw) in enumerate(rows, start=1):
        try:
            tasks.append(dataclasses.replace(template, object_id=oid, **kw))
        except (TypeError, ValueError) as exc:
            raise UserError(f"--manifest {Path(args.manifest).name} row {r}: {exc}") from None
    return tasks


def catalog_jobs(args, template):
    """The :class:`~mogviewer.batch.cutouts.CutoutJob` s of catalogue mode."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS

    from .. import _warnings
    from ..batch.cutouts import plan_cutout_jobs
    from ..io.catalog import read_catalog

    try:
        with fits.open(args.image, memmap=True) as hdul:
            idx = args.hdu if args.hdu is not None else next(
                (i for i, h in enumerate(hdul) if h.is_image and h.header.get("NAXIS") == 2),
                None)
            if idx is None:
                raise UserError(f"--image {args.image}: no 2-D image HDU")
            header = hdul[idx].header
            shape = (header.get("NAXIS2"), header.get("NAXIS1"))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise UserError(f"--image {args.image}: cannot be read as FITS "
                        f"({' '.join(str(exc).split())})") from None
    wcs = None
    with _warnings.catch():
        warnings.simplefilter("ignore")
        try:
            if header.get("CTYPE1"):
                wcs = WCS(header).celestial
                wcs = wcs if wcs.has_celestial else None
        except Exception:  # noqa: BLE001 - a broken WCS: the catalogue must give pixels
            wcs = None
        sources = read_catalog(args.catalog, wcs=wcs, size_column=args.size_column)
    n_all = len(sources)
    unplaced = [s.id for s in sources if not (math.isfinite(s.x) and math.isfinite(s.y))]
    outside = [s.id for s in sources if math.isfinite(s.x) and math.isfinite(s.y)
               and not (-0.5 <= s.x < shape[1] - 0.5 and -0.5 <= s.y < shape[0] - 0.5)]
    for ids, why in ((unplaced, "have no finite position (NaN or infinite RA/Dec or x/y)"),
                     (outside, "lie outside --image")):
        if ids:
            print(f"mogviewer fit: note: {len(ids)} catalogue sources {why} "
                  f"({', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}): not fitted",
                  file=sys.stderr)
    if unplaced or outside:
        left_out = set(unplaced) | set(outside)
        sources = [s for s in sources if s.id not in left_out]
    if not sources:
        raise UserError(f"--catalog {args.catalog}: none of its {n_all} sources lies on "
                        f"--image {args.image}: nothing to fit")
    ids = Counter(s.id for s in sources)
    twice = [i for i, n in ids.items() if n > 1]
    if twice:
        raise UserError(f"--catalog {args.catalog}: id {twice[0]!r} appears {ids[twice[0]]} "
                        "times; ids must be unique (they key --resume)")
    if args.psf:
        _check_field_psf(args, sources, shape)
    return plan_cutout_jobs(args.image, sources, template, hdu=args.hdu, weight=args.weight,
                            weight_hdu=args.weight_hdu, psf_cell=args.psf_cell,
                            size=args.cutout_size, size_factor=args.size_factor,
                            neighbour_radius=args.neighbour_radius,
                            centre_box=args.centre_box or None)


def _check_field_psf(args, sources, shape):
    """Read the PSF once before any fit (at the field centre for PSFEx), so that a PSF that
    cannot be read stops the run with one line instead of failing every row."""
    from ..batch import load_psf
    from ..batch.cutouts import _varies

    pos = None
    if _varies(args.psf):
        pos = (shape[1] / 2.0 + 0.5, shape[0] / 2.0 + 0.5)
    import warnings

    from .. import _warnings

    try:
        with _warnings.catch(record=True) as caught:
            warnings.simplefilter("always")
            load_psf(args.psf, hdu=args.psf_hdu, n_components=args.psf_components,
                     position=pos, centre=args.psf_centre)
    except Exception as exc:  # noqa: BLE001 - a PSF that cannot be read stops the batch
        raise UserError(f"--psf {args.psf}: {' '.join(str(exc).split())}") from None
    for w in {" ".join(str(w.message).split()) for w in caught}:
        print(f"mogviewer fit: note: {w}", file=sys.stderr)


def executor_options(args):
    """``run_batch`` keyword arguments for where the jobs run."""
    if args.scheduler:
        return dict(executor="dask", scheduler=args.scheduler.strip())
    if args.dask:
        return dict(executor="dask")
    return dict(executor="processes")


def write_table(csv_path, table_path, inputs=()):
    """All rows of the CSV as a typed table (FITS, ECSV or Parquet), written atomically."""
    import warnings

    from astropy.table import Table

    from .. import _warnings

    fmt = TABLE_FORMATS[Path(table_path).suffix.lower()]
    with _warnings.catch():
        warnings.simplefilter("ignore")     # astropy's notes on empty and mixed columns
        t = Table.read(csv_path, format="csv")
        with opt.atomic_output_or_user_error(table_path, "--table", inputs=inputs) as tmp:
            t.write(tmp, format=fmt)
    return len(t)


class TextProgress:
    """A tqdm progress bar on a stream (stderr): objects done, rate and ETA, and the last
    row's status; on a stream that is not a terminal it redraws at most every 10 s."""

    def __init__(self, stream=None, unit="file"):
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.bar = None
        # the clock starts with the run, not at its first row: a bar started at the first row
        # showed "1/1 [00:00<00:00, 3869.28file/s]" for a 9 s fit
        self.t0 = time.time()

    def __call__(self, done, total, row):
        if self.bar is None:
            from tqdm import tqdm

            tty = bool(getattr(self.stream, "isatty", lambda: False)())
            # rate and ETA count this run's objects: those --resume skipped are the initial
            self.bar = tqdm(total=total, initial=done - 1, file=self.stream, unit=self.unit,
                            dynamic_ncols=tty, mininterval=0.2 if tty else 10.0, ascii=not tty)
            self.bar.start_t = self.t0          # tqdm's rate and elapsed count from here
        status = row.get("status", "?")
        if row.get("reason") and status != "failed":
            status += " (see reason)"
        name = row.get("object_id") or Path(str(row.get("file") or "?")).name
        if len(str(name)) > 40:
            name = "..." + str(name)[-37:]
        self.bar.set_postfix_str(f"{name}: {status}", refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
