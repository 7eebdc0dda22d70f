"""The hostile corpus of issue 15 (scripts/make_hostile_corpus.py) through the command line, as a
user would run it. For every case: the documented exit status (0 fitted, 1 some files failed,
2 bad input: one clear line, never a traceback); the message fragment (stderr, or the CSV's
reason); every input file unchanged (bytes, and FIFOs/devices still what they were); the files
the case must create; and no temporary file or directory left anywhere.

Each case runs under a 60 s alarm, so a regression that blocks on a FIFO fails the case instead of
hanging the suite."""

import csv
import hashlib
import importlib.util
import os
import shutil
import signal
import stat
from pathlib import Path

import pytest

from mogviewer import cli

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_hostile_corpus",
                                               ROOT / "scripts" / "make_hostile_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

CASES = corpus._cases()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    corpus.make_corpus(d)
    return d


def _snapshot(root):
    """{relative path: (kind, sha256 or None)} of everything under ``root`` (links not
    followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                # a sparse 40 MB file: its size and first/last blocks stand for it
                if st.st_size > 2 ** 20:
                    with open(p, "rb") as fh:
                        head = fh.read(4096)
                        fh.seek(-4096, 2)
                        digest = hashlib.sha256(head + fh.read()).hexdigest() + str(st.st_size)
                else:
                    digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", digest, st.st_ino)
            else:
                out[rel] = (stat.S_IFMT(st.st_mode), None, st.st_ino)
    return out


def _temporaries(root):
    return [str(p) for p in Path(root).rglob("*")
            if p.name.startswith(".mogviewer-") or ".tmp" in p.name]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout("the case blocked for 60 s")


def _setup(case, sub):
    for op, src, dst in case["setup"]:
        src = None if src is None else Path(src.format(**sub))
        dst = Path(dst.format(**sub))
        dst.parent.mkdir(parents=True, exist_ok=True)
        if op == "symlink":
            dst.symlink_to(src)
        elif op == "hardlink":
            os.link(src, dst)
        elif op == "copy":
            shutil.copy(src, dst)
        elif op == "fifo":
            os.mkfifo(dst)
        else:
            raise ValueError(op)


def test_corpus_has_at_least_100_cases_in_every_class():
    assert len(CASES) >= 100
    assert len({c["id"] for c in CASES}) == len(CASES)  # ids are unique
    classes = {c["cls"] for c in CASES}
    assert classes == {"outputs", "nonregular", "bounded", "names", "append", "options",
                       "values", "psf", "start"}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case, base, tmp_path, capsys):
    sub = {"in": str(base / "in"), "out": str(tmp_path / "out")}
    (tmp_path / "out").mkdir()
    _setup(case, sub)
    inputs_before = _snapshot(base / "in")
    out_before = _snapshot(tmp_path / "out")
    argv = [a.format(**sub) for a in case["argv"]]
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        status = cli.main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert status == case["status"], err
    if case["msg"] is not None:
        assert case["msg"] in err, err
    if status == 2:  # one line (argparse adds a second pointing to --help)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert 1 <= len(lines) <= 2 and "error" in lines[0], err
    if case["reason"] is not None:
        csv_path = Path(argv[argv.index("--csv") + 1])
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and all(case["reason"] in r["reason"] for r in rows), rows[0]["reason"]
    for rel in case["creates"]:
        assert (tmp_path / "out" / rel).is_file(), rel
    # every input and every file the case set up is exactly as it was
    assert _snapshot(base / "in") == inputs_before
    after = _snapshot(tmp_path / "out")
    assert {k: v for k, v in after.items() if k in out_before} == out_before
    assert not _temporaries(base) and not _temporaries(tmp_path)
