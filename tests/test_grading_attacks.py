"""Grading a hostile class: every attack gets its expected row and no other row changes.

One class of tiny-chapter submissions (honest students and attackers side by side) is graded
once, in the sandbox, with two jobs at a time; the tests below read that one result.  Each
attack's expected row is written out in ``EXPECTED``; the whole CSV must match it exactly, so
an attack that changed anybody else's grade fails the suite.  SUBMISSIONS must be unchanged
(checksums) and OUT must hold exactly the files a grading run writes.

Needs bubblewrap.  Without it these tests fail (under CI) or are skipped (elsewhere) with a
message saying why; they are never skipped silently.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import sys
import unicodedata
from pathlib import Path

import nbformat
import pytest

from course_lib.tooling import grading
from course_lib.tooling.grading import sandbox
from course_lib.tooling.notebooks import from_percent

CH99 = '''\
# %% [markdown]
# Two small functions.
# %%
import math

import numpy as np
# %% solution id=double-code
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION
# %% tests id=double-tests points=3
assert double(1) == 2, "double(1) should be 2"
### BEGIN HIDDEN TESTS
assert double(-4) == -8
assert np.allclose(double(np.arange(3.0)), [0.0, 2.0, 4.0])
assert math.isclose(double(0.25), 0.5)
### END HIDDEN TESTS
# %% solution id=greet-code
def greet(name):
    ### BEGIN SOLUTION
    return "hello " + name
    ### END SOLUTION
# %% tests id=greet-tests points=2
assert greet("a") == "hello a"
### BEGIN HIDDEN TESTS
assert greet("Zoë") == "hello Zoë"
assert isinstance(greet("b"), str) and type(greet("b")) is str
### END HIDDEN TESTS
'''

CH98 = '''\
# %% solution id=triple-code
def triple(x):
    ### BEGIN SOLUTION
    return 3 * x
    ### END SOLUTION
# %% tests id=triple-tests points=1
assert triple(1) == 3
### BEGIN HIDDEN TESTS
assert triple(-2) == -6
### END HIDDEN TESTS
'''

RIGHT_DOUBLE = "def double(x):\n    return x + x"
RIGHT_GREET = "def greet(name):\n    return 'hello ' + name"
WRONG_DOUBLE = "def double(x):\n    return 2 * x if x == 1 else 0"   # passes the visible check only
WRONG_GREET = "def greet(name):\n    return 'hello a'"
LIMITS = grading.Limits(cell_timeout=6, notebook_timeout=25, memory_mb=2048, max_output_bytes=200_000)

NEEDS_SANDBOX = sandbox.check()
if NEEDS_SANDBOX and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the sandboxed grading tests, but: {NEEDS_SANDBOX} "
                       "(.ci/run installs bubblewrap)")
pytestmark = pytest.mark.skipif(bool(NEEDS_SANDBOX), reason=f"no sandbox here: {NEEDS_SANDBOX}")


def _row(score, status="graded", double=None, greet=None, triple=None):
    return {"score": score, "status": status, "double": double, "greet": greet, "triple": triple}


def ok(status="graded"):
    return _row("5", status, "3", "2")


# (folder, chapter) -> expected row; statuses are matched as prefixes, scores exactly
EXPECTED = {
    ("alice", "ch99"): ok(),
    ("alice", "ch98"): _row("1", triple="1"),
    ("bob", "ch99"): _row("0", double="0", greet="0"),
    ("carol", "ch99"): _row("0", double="0", greet="0"),
    ("dave", "ch99"): _row("", "not graded: invalid notebook: ch99_exercises.ipynb is not a valid notebook"),
    ("warner", "ch99"): ok(),
    ("exit0", "ch99"): _row("3", "graded; kernel died in cell 5", double="3", greet="0"),
    ("quitter", "ch99"): ok(),  # quit() does not stop an ipykernel: nothing lost
    ("copypaste", "ch99"): ok(),
    ("solflag", "ch99"): ok("graded; tampered test cell double-tests: restored"),
    ("renamed", "ch99"): ok("graded; cell marked 'renamed-tests'"),
    ("deleter", "ch99"): ok("graded; missing cell double-tests: restored"),
    ("stubborn", "ch99"): _row("3", "graded; timeout after 6 s in cell 5", double="3", greet="0"),
    ("sleepy", "ch99"): _row("3", "graded; timeout after 25 s (notebook)", double="3", greet="0"),
    ("Smith, J [42]", "ch99"): ok(),
    ("snoop", "ch99"): ok(),
    ("snoop", "ch98"): _row("0", triple="0"),
    ("transformer", "ch99"): _row("0", double="0", greet="0"),
    ("patcher", "ch99"): _row("0", double="0", greet="0"),
    ("hider", "ch99"): _row("0", double="0", greet="0"),
    ("forger", "ch99"): _row("0", double="0", greet="0"),
    ("flood", "ch99"): ok(),
    ("hog", "ch99"): ok(),
    ("crasher", "ch99"): _row("3", "graded; kernel died in cell 5", double="3", greet="0"),
    ("linker", "ch99"): _row("", "not graded: invalid notebook: ch99_exercises.ipynb is a symbolic link"),
    ("halfway", "ch99"): _row("", "not graded: missing notebook ch99_exercises.ipynb"),
    ("halfway", "ch42"): _row("", "not graded: unknown chapter 'ch42'"),
    (unicodedata.normalize("NFC", "Zoë"), "ch99"): ok("graded; warning: folder name"),
    (unicodedata.normalize("NFD", "Zoë"), "ch99"): _row("0", "graded; warning: folder name", "0", "0"),
    ("absent", "ch99"): _row("", "not submitted"),
    ("absent", "ch98"): _row("", "not submitted"),
}
for (who, ch) in list(EXPECTED):
    if ch == "ch99" and (who, "ch98") not in EXPECTED:
        EXPECTED[(who, "ch98")] = _row("", "not submitted")


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and
            not p.is_symlink() else "link" for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    source = tmp / "solutions"
    for ch, text in (("ch99", CH99), ("ch98", CH98)):
        (source / ch).mkdir(parents=True)
        nbformat.write(from_percent(text), source / ch / f"{ch}_exercises.ipynb")
    released = tmp / "exercises"
    grading.release(source, released)
    subs, out = tmp / "SUBMISSIONS", tmp / "OUT"
    venv_marker = Path(sys.prefix) / "PWNED"

    def stub(ch="ch99"):
        return nbformat.read(released / ch / f"{ch}_exercises.ipynb", as_version=4)

    def submit(who, nb, ch="ch99"):
        folder = subs / who / ch
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{ch}_exercises.ipynb")

    def student(double=RIGHT_DOUBLE, greet=RIGHT_GREET, extra=(), ch="ch99"):
        """cells: 0 md, 1 set-up, 2 double, 3 its tests, 4 greet, 5 its tests; extra cells are
        inserted before greet's cell (so they run as cell 5, after double's tests)."""
        nb = stub(ch)
        nb.cells[2].source, nb.cells[4].source = double, greet
        for n, src in enumerate(extra):
            nb.cells.insert(4 + n, nbformat.v4.new_code_cell(src))
        return nb

    paths = {"solutions": str(source), "subs": str(subs), "out": str(out), "tmp": str(tmp),
             "alice": str(subs / "alice" / "ch99" / "ch99_exercises.ipynb"), "venv": str(venv_marker),
             "ch98_source": str(source / "ch98" / "ch98_exercises.ipynb"),
             "repo_solutions": str(grading.SOLUTIONS), "repo_tests": str(grading.ROOT / "tests")}
    snoop = f"""
import glob, os, json, socket
P = {json.dumps(paths)}
found = {{}}
for name, path in P.items():
    found[name] = os.path.exists(path)
    for attempt in (lambda: open(path).read(10), lambda: os.remove(path),
                    lambda: open(path, "w").write("PWNED"), lambda: open(path + "-PWNED", "w").write("x")):
        try:
            attempt()
            found[name + " writable or readable"] = True
        except Exception:
            pass
for rel in ("../../../solutions", "../solutions", "../../OUT", "../SUBMISSIONS"):
    found[rel] = os.path.exists(rel)
found["procs"] = sorted({{open(f).read().replace(chr(0), " ")[:60] for f in glob.glob("/proc/[0-9]*/cmdline")}})
found["tmp grading"] = glob.glob("/tmp/grading-*")
try:
    socket.create_connection(("127.0.0.1", 22), timeout=2)
    found["network"] = True
except OSError:
    found["network"] = False
print("uid", os.getuid())
print(json.dumps(found))
"""

    # honest work (the fixture tests of the old suite: right, wrong on hidden tests, blank, not json)
    submit("alice", student())
    submit("alice", _with(stub("ch98"), 0, "def triple(x):\n    return x * 3"), "ch98")
    submit("bob", student(WRONG_DOUBLE, WRONG_GREET))
    submit("carol", stub())
    (subs / "dave" / "ch99").mkdir(parents=True)
    (subs / "dave" / "ch99" / "ch99_exercises.ipynb").write_text("{ this is not json")
    # a correct answer that warns (stderr in a test cell) keeps its points
    submit("warner", student(RIGHT_DOUBLE.replace("return", "import warnings, sys\n    warnings.warn("
                                                 "'careful', UserWarning)\n    print('stderr!', file=sys.stderr)\n    return"),
                             RIGHT_GREET))
    # issue 9, item 1: one broken notebook must not cost the others
    submit("exit0", student(extra=["import os\nos._exit(0)"]))
    submit("quitter", student(extra=["quit()"]))
    nb = student()
    nb.cells.insert(4, nbformat.v4.new_code_cell(nb.cells[3].source, metadata=nb.cells[3].metadata))
    submit("copypaste", nb)
    nb = student()
    nb.cells[3].metadata.nbgrader["solution"] = True
    submit("solflag", nb)
    nb = student()
    nb.cells[3].metadata.nbgrader["grade_id"] = "renamed-tests"
    submit("renamed", nb)
    nb = student()
    del nb.cells[3]
    submit("deleter", nb)
    submit("stubborn", student(extra=["import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"]))
    submit("sleepy", student(extra=["import time\ntime.sleep(4)"] * 8))
    submit("Smith, J [42]", student())
    (subs / ".x" / "ch99").mkdir(parents=True)
    (subs / "__MACOSX" / "ch99").mkdir(parents=True)
    (subs / "README.txt").write_text("not a student")
    # item 2: reading and writing what is not yours
    submit("snoop", student(extra=[snoop]))
    submit("snoop", stub("ch98"), "ch98")  # its ch99 answer tried to rewrite ch98's hidden tests
    # item 3: vacuous passes
    submit("transformer", student(WRONG_DOUBLE, WRONG_GREET, extra=[
        "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])"]))
    submit("patcher", student(WRONG_DOUBLE, "class S(str):\n    def __eq__(self, other):\n        return True\n"
                              "    __hash__ = str.__hash__\ndef greet(name):\n    return S('nope')", extra=[
        "import math, sys, types, builtins\nimport numpy as np\n"
        "np.allclose = math.isclose = lambda *a, **k: True\n"
        "fake = types.ModuleType('numpy'); fake.allclose = lambda *a, **k: True; sys.modules['numpy'] = fake\n"
        "class Quiet(Exception):\n    pass\nbuiltins.AssertionError = Quiet"]))
    submit("hider", student(WRONG_DOUBLE, WRONG_GREET, extra=[
        "ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\nip._showtraceback = lambda *a, **k: None\n"
        "import sys\nsys.excepthook = lambda *a: None"]))
    submit("forger", student(WRONG_DOUBLE, WRONG_GREET, extra=[
        "rec = [c.__self__ for c in get_ipython().events.callbacks['pre_run_cell']][0]\n"
        "rec.log.write('{\"key\": \"x\", \"calls\": [], \"snap\": {}}\\n' + '[' * 100000 + '\\n')\n"
        "import json\nclass Evil:\n    pass\n"
        "for key in [k for ks in rec.trusted.values() for k in ks]:\n"
        "    rec.log.write(json.dumps({'key': key, 'snap': {'double': ['fn'], 'greet': ['fn']}, 'calls': [\n"
        "        {'fn': 'double', 'res': ['u', 'x']}, {'fn': 'double', 'res': ['t', 'object', [1], '']},\n"
        "        {'fn': 'greet', 'res': ['s', 'hello a']}]}) + '\\n')\n"
        "rec.log.flush()\nrec.log = open('/dev/null', 'w')"]))
    # limits: output bytes, memory, crashes
    submit("flood", student(extra=["print('x' * 50_000_000)"]))
    submit("hog", student(extra=["import numpy as np\ntry:\n    big = np.ones(10**11)\nexcept MemoryError:\n"
                                 "    print('no memory')\nblob = bytearray(3 * 2**30)"]))
    submit("crasher", student(extra=["import ctypes\nctypes.string_at(0)"]))
    (subs / "linker" / "ch99").mkdir(parents=True)
    (subs / "linker" / "ch99" / "ch99_exercises.ipynb").symlink_to(source / "ch99" / "ch99_exercises.ipynb")
    (subs / "halfway" / "ch99").mkdir(parents=True)
    (subs / "halfway" / "ch42").mkdir(parents=True)
    # item 7: look-alike ids
    submit(unicodedata.normalize("NFC", "Zoë"), student())
    submit(unicodedata.normalize("NFD", "Zoë"), stub())
    roster = sorted({who for who, _ in EXPECTED})

    before = _tree(subs)
    scores = grading.grade(subs, out, source=source, jobs=2, limits=LIMITS, roster=roster)
    return {"scores": scores, "out": out, "subs": subs, "before": before, "source": source,
            "venv_marker": venv_marker, "rows": list(csv.DictReader(open(scores, encoding="utf-8")))}


def _with(nb, index, source):
    nb.cells[index].source = source
    return nb


def test_every_row_is_the_expected_one(graded):
    rows = {(r["folder"], r["assignment"]): r for r in graded["rows"]}
    assert sorted(rows) == sorted(EXPECTED), "one row per (student, chapter), no more"
    problems = []
    for key, want in EXPECTED.items():
        row = rows[key]
        got = {"score": row["score"], "double": row.get("ch99/double-tests") or None,
               "greet": row.get("ch99/greet-tests") or None, "triple": row.get("ch98/triple-tests") or None}
        if any(got[k] != want[k] for k in got) or not row["status"].startswith(want["status"]):
            problems.append(f"{key}: got {got} / {row['status']!r}, expected {want}")
    assert not problems, "\n".join(problems)


def test_honest_work_is_graded_right(graded):
    """The old fixture tests: right answer full marks, wrong 0, blank 0, broken file a reason."""
    rows = {(r["folder"], r["assignment"]): r for r in graded["rows"]}
    alice = rows[("alice", "ch99")]
    assert (alice["score"], alice["max_score"], alice["raw_score"]) == ("5", "5", "5")
    assert (alice["ch99/double-tests max"], alice["ch99/greet-tests max"]) == ("3", "2")
    assert rows[("carol", "ch99")]["score"] == "0"
    dave = rows[("dave", "ch99")]
    assert dave["score"] == "" and dave["raw_score"] == "" and dave["max_score"] == "5"
    assert rows[("absent", "ch99")]["ch99/double-tests"] == ""   # ungraded: empty, not 0
    assert (graded["out"] / "feedback" / "alice" / "ch99" / "ch99_exercises.html").exists()
    # a second run refuses to overwrite the grades it wrote
    with pytest.raises(grading.GradingError, match="not empty"):
        grading.grade(graded["subs"], graded["out"], source=graded["source"])


def test_submissions_untouched_and_out_holds_exactly_the_grading_files(graded):
    out, subs = graded["out"], graded["subs"]
    assert _tree(subs) == graded["before"], "SUBMISSIONS changed"
    assert not graded["venv_marker"].exists()
    rows = graded["rows"]
    expected = {"scores.csv", "notes.txt", "course/nbgrader_config.py", "course/gradebook.db"}
    for ch in ("ch98", "ch99"):
        expected |= {f"course/source/{ch}/{ch}_exercises.ipynb", f"course/release/{ch}/{ch}_exercises.ipynb"}
    for r in rows:
        if r["status"].startswith("graded"):
            sid, ch, nb = r["student_id"], r["assignment"], f"{r['assignment']}_exercises"
            expected |= {f"feedback/{sid}/{ch}/{nb}.html", f"course/feedback/{sid}/{ch}/{nb}.html",
                         f"course/autograded/{sid}/{ch}/{nb}.ipynb", f"course/submitted/{sid}/{ch}/{nb}.ipynb"}
    have = set(_tree(out))
    assert have == expected, f"unexpected: {sorted(have - expected)}; missing: {sorted(expected - have)}"
    assert not any("PWNED" in p for p in have)
    # the kept gradebook: one submission per graded row, the same scores as the CSV
    db = sqlite3.connect(out / "course" / "gradebook.db")
    n = db.execute("select count(*) from submitted_assignment").fetchone()[0]
    assert n == sum(r["status"].startswith("graded") for r in rows)


def _printed(graded, who, ch="ch99"):
    nb = nbformat.read(graded["out"] / "course" / "autograded" / who / ch / f"{ch}_exercises.ipynb", as_version=4)
    return "".join(o.get("text", "") + str(o.get("ename", "")) + str(o.get("evalue", "")) for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)


def test_the_sandbox_hides_everything_but_the_notebook(graded):
    text = _printed(graded, "snoop")
    found = json.loads(next(line for line in text.splitlines() if line.startswith('{"solutions"')))
    if os.geteuid() == 0:
        assert "uid 65534" in text, "student code runs as nobody"
    assert set(found) >= {"solutions", "subs", "out", "alice", "venv", "ch98_source", "repo_solutions", "network"}
    assert not any(v for k, v in found.items() if k not in ("procs", "tmp grading")), found
    assert found["tmp grading"] == []
    assert not any(str(graded["subs"]) in p or "grading-" in p for p in found["procs"]), found["procs"]
    assert str(graded["subs"]) not in text


def test_memory_is_limited(graded):
    assert "MemoryError" in _printed(graded, "hog")


def test_outputs_are_capped_in_bytes(graded):
    page = graded["out"] / "feedback" / "flood" / "ch99" / "ch99_exercises.html"
    assert page.stat().st_size < 2_000_000
    assert "over the output limit" in page.read_text()


def test_notes_name_skipped_folders(graded):
    notes = (graded["out"] / "notes.txt").read_text()
    for name in (".x", "__MACOSX", "README.txt"):
        assert f"skipped {name!r}" in notes
