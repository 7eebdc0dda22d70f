""":func:`plan_outputs`: the names of a batch's per-file outputs, unique and never an input.

The rule (also in the README's Reliability section):

1. A file's outputs are named after it: ``cut.fits`` gives ``cut_imgblock.fits``, ``cut.reg`` and
   ``cut_model.json`` (with ``_BAND``, ``_hduN`` or ``_planeN`` added when ``--band``, ``--hdu``
   or ``--plane`` is given).
2. When two inputs would get the same name (compared ignoring case, as macOS and Windows file
   systems do), each of them is named after its path instead: the directories from the first one
   where their paths differ, joined by ``__`` (``A/cut.fits`` -> ``A__cut``, ``B/cut.fits`` ->
   ``B__cut``).
3. A name still shared after that (the same file listed twice, ``cut.fits`` and ``cut.npy``) gets
   ``_2``, ``_3``, ... in command-line order, skipping any name another input has anyway.
4. An output that would be one of the batch's inputs (an image, noise map, mask, segmentation
   map, PSF or start model; or the CSV) stops the batch before any fit, with a message naming
   both.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import ExportError
from ..export import columns_doc_path
from ..export.files import InputSet, _resolved, check_output_path
from .tasks import _simple_stem


def _dir_parts(image):
    return Path(_resolved(os.fspath(image))).parent.parts


def plan_outputs(tasks, csv_path=None):
    """Give every task a unique ``output_name`` and check every output against the inputs.

    Parameters
    ----------
    tasks : sequence of FitTask
    csv_path : path, optional
        The batch's CSV (an output too: it must not be an input or a per-file output).

    Returns
    -------
    tasks : list of FitTask
        With ``output_name`` set by the rule of this module.
    renamed : list of (image, stem)
        The files whose outputs are not named by rule 1, for telling the user.

    Raises
    ------
    ExportError
        An output is an input, or is the CSV; or a target is a FIFO, device or directory.
    """
    tasks = list(tasks)
    if not any(t.imgblock_dir or t.region_dir or t.model_json_dir for t in tasks):
        # no per-file outputs: nothing to name, only the CSV to check against the inputs
        if csv_path is not None:
            inputs = InputSet(p for t in tasks for p in t.input_files())
            check_output_path(csv_path, "CSV", inputs=inputs)
        return tasks, []
    simple = [_simple_stem(t) for t in tasks]
    groups = {}
    for i, stem in enumerate(simple):
        groups.setdefault(stem.casefold(), []).append(i)
    stems = list(simple)
    for members in groups.values():
        if len(members) < 2:
            continue
        parts = [_dir_parts(tasks[i].image) for i in members]
        common = 0
        while all(len(p) > common for p in parts) and len({p[common] for p in parts}) == 1:
            common += 1
        for i, p in zip(members, parts):
            rest = [c for c in p[common:] if c not in ("/", "\\")]
            if rest:
                stems[i] = "__".join(rest + [simple[i]])
    # rule 3: a name taken again gets _2, _3, ... skipping every name some input has anyway
    taken = {stem.casefold() for stem in stems}
    seen = set()
    for i, stem in enumerate(stems):
        key = stem.casefold()
        if key in seen:
            k = 2
            while f"{stem}_{k}".casefold() in taken:
                k += 1
            stems[i] = f"{stem}_{k}"
            key = stems[i].casefold()
            taken.add(key)
        seen.add(key)
    renamed = [(t.image, s) for t, s, s0 in zip(tasks, stems, simple) if s != s0]
    tasks = [dataclasses.replace(t, output_name=s) if s != t.output_name else t
             for t, s in zip(tasks, stems)]

    inputs = InputSet()
    for t in tasks:
        for p in t.input_files():
            inputs.add(p)
    written = {}
    if csv_path is not None:
        csv_target = check_output_path(csv_path, "CSV", inputs=inputs)
        written[_resolved(csv_target)] = f"the CSV {csv_path}"
        written[_resolved(columns_doc_path(csv_target))] = "the CSV's column notes"
    for t in tasks:
        for path, what in t.output_files():
            check_output_path(path, f"the {what} of {t.image}", inputs=inputs)
            key = _resolved(path)
            if key in written:
                raise ExportError(f"refusing to write the {what} of {t.image} to {path}: "
                                  f"{written[key]} is written there too; choose other "
                                  "output directories")
            written[key] = f"the {what} of {t.image}"
    return tasks, renamed
