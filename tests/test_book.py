"""The course as a website (`make book`, course_lib/tooling/book.py), read in a real browser.

The site is built once for this module into a temporary folder, served from 127.0.0.1, and every
page is opened in Debian's chromium through Playwright: the page loads, every internal link leads
to a page (and heading) of the site, every formula is typeset by the bundled MathJax, the console
stays free of errors and no request leaves the machine (requests to any other host are recorded
and aborted, so none is ever sent).  Screenshots of a few pages are kept in build/artifacts/book/.

Without chromium (`apt-get install -y chromium`; `.ci/run` installs it) the browser tests skip on
a laptop and fail under CI=true.  The tests further down show that each check does fail on a page
that breaks it, and that the builder refuses broken links, outside resources and solutions.
"""
from __future__ import annotations

import contextlib
import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from course_lib.tooling import book

ROOT = book.ROOT
ARTIFACTS = ROOT / "build" / "artifacts" / "book"
SITE = book.pages(ROOT)  # source notebook -> page
SCREENSHOTS = ("index.html", "chapters/03_ill_conditioning.html",
               "chapters/12_adam_and_its_family.html", "exercises/ch03/ch03_exercises.html")
MATH_TIMEOUT_MS = 60_000
_MATH = re.compile(r"\$[^$]+\$|\\\(|\\\[|\\begin\{")
_RAW_TEX = re.compile(r"(?<!\\)\$[^$\s][^$]*\$|\\\(|\\\[|\\begin\{|\\frac\b")


def has_math(src: str) -> bool:
    nb = nbformat.read(ROOT / src, as_version=4)
    return any(_MATH.search(c.source) for c in nb.cells if c.cell_type == "markdown")


# --------------------------------------------------------------------------- browser and server
def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = ("Debian's chromium is not installed (apt-get install -y chromium; .ci/run "
               "installs it): the website's browser tests cannot run")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """An HTTP server for `directory` on 127.0.0.1 (a free port), in a thread."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        # small /dev/shm in containers: chromium then crashes on long pages unless told
        chromium = p.chromium.launch(executable_path=path, args=["--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book") / "site"
    book.build(ROOT, out)
    return out


@pytest.fixture(scope="module")
def base_url(site):
    with serve(site) as url:
        yield url


class Reader:
    """A browser context that lets requests reach `base` only: any other request is recorded in
    `outside` and aborted before it leaves.  `read` opens one page and lists what is wrong."""

    def __init__(self, browser, base: str):
        self.base = base
        self.outside: list[str] = []
        self.context = browser.new_context(viewport={"width": 1366, "height": 768})
        self.context.route("**/*", self._route)
        self._targets: dict[str, tuple[int, set[str]]] = {}

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.base):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort("blockedbyclient")

    def close(self):
        self.context.close()

    def _target(self, url: str) -> tuple[int, set[str]]:
        """HTTP status and element ids of an internal link's page (fetched once)."""
        if url not in self._targets:
            response = self.context.request.get(url)
            ids = set()
            if response.ok and "html" in response.headers.get("content-type", ""):
                ids = {html.unescape(m) for m in re.findall(r'\b(?:id|name)="([^"]*)"',
                                                            response.text())}
            self._targets[url] = (response.status, ids)
        return self._targets[url]

    def read(self, path: str, *, math: bool, math_timeout_ms: int = MATH_TIMEOUT_MS,
             screenshot: Path | None = None):
        """(problems, page): every problem found on the page at `path`; the page stays open."""
        problems: list[str] = []
        outside_before = len(self.outside)
        page = self.context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(
            f"console error: {m.text[:300]}"))
        page.on("pageerror", lambda e: problems.append(f"uncaught exception: {e}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(
            f"HTTP {r.status} for {r.url}"))
        response = page.goto(self.base + path, wait_until="load")
        if response is None or response.status != 200:
            problems.append(f"the page itself: HTTP {response and response.status}")
            return problems, page
        if math:
            problems += self._check_math(page, math_timeout_ms)
        problems += self._check_links(page)
        page.wait_for_load_state("networkidle")
        problems += [f"request to another host: {u}" for u in self.outside[outside_before:]]
        if screenshot:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        return problems, page

    def _check_math(self, page, timeout_ms: int) -> list[str]:
        try:
            page.wait_for_selector("html[data-book-math=done]", state="attached",
                                   timeout=timeout_ms)
        except Exception:  # playwright's TimeoutError
            return [f"MathJax did not finish typesetting within {timeout_ms} ms"]
        found = page.evaluate("""() => {
            const scripts = [...document.querySelectorAll('script[type^="math/tex"]')];
            const skip = 'script, style, code, pre, .MathJax, .MathJax_Display, .MJX_Assistive_MathML';
            let text = '';
            for (const root of document.querySelectorAll('.jp-RenderedMarkdown')) {
              const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
              while (walk.nextNode())
                if (!walk.currentNode.parentElement.closest(skip)) text += walk.currentNode.data;
              text += '\\n';
            }
            return {formulas: scripts.length,
                    unrendered: scripts.filter(s => !document.getElementById(s.id + '-Frame')).length,
                    errors: document.querySelectorAll('.merror, .MathJax_Error').length,
                    text};
        }""")
        problems = []
        if found["formulas"] == 0:
            problems.append("no formula was typeset (no MathJax output on a page with math)")
        if found["unrendered"]:
            problems.append(f"{found['unrendered']} of {found['formulas']} formulas not rendered")
        if found["errors"]:
            problems.append(f"{found['errors']} formulas rendered as MathJax errors")
        raw = _RAW_TEX.findall(found["text"])
        if raw:
            problems.append(f"raw TeX left in the text: {raw[:5]}")
        return problems

    def _check_links(self, page) -> list[str]:
        problems = []
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
        for href in sorted(set(hrefs)):
            parts = urlsplit(href)
            if not href.startswith(self.base):
                if parts.scheme in ("http", "https", "mailto"):
                    continue  # a link to another site: fine to show, never requested here
                problems.append(f"link {href!r} is neither internal nor to another site")
                continue
            if parts.path.endswith(".ipynb"):
                problems.append(f"link to a notebook, not to its page: {href}")
            status, ids = self._target(href.split("#")[0])
            if status != 200:
                problems.append(f"broken link: {href} (HTTP {status})")
            elif parts.fragment and not {parts.fragment, unquote(parts.fragment)} & ids:
                problems.append(f"broken link: {href} (no element #{unquote(parts.fragment)})")
        return problems


@pytest.fixture(scope="module")
def reader(browser, base_url):
    r = Reader(browser, base_url)
    yield r
    r.close()


# --------------------------------------------------------------------------- the real site
@pytest.mark.parametrize("src", list(SITE), ids=list(SITE.values()))
def test_page_reads_offline_with_links_and_math(reader, src):
    page_path = SITE[src]
    shot = ARTIFACTS / (page_path.replace("/", "__").removesuffix(".html") + ".png") \
        if page_path in SCREENSHOTS else None
    problems, page = reader.read(page_path, math=has_math(src), screenshot=shot)
    try:
        assert problems == [], f"{page_path} (from {src}):\n  " + "\n  ".join(problems)
        title = page.title()
        assert title and title != Path(src).stem, f"{page_path}: no title from the first heading"
    finally:
        page.close()


def test_every_notebook_is_a_page_and_the_index_is_home(site):
    assert SITE[book.INDEX] == "index.html"
    chapters = sorted(p.name for p in (ROOT / "chapters").glob("*.ipynb"))
    exercises = sorted(p.name for p in (ROOT / "exercises").glob("ch*/*.ipynb"))
    assert len(chapters) >= 15 and len(exercises) >= 14
    built = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                   if not p.relative_to(site).as_posix().startswith(book.STATIC))
    assert built == sorted(SITE.values())
    assert not any(p.startswith("solutions") for p in built)


def test_the_site_reads_from_its_folder_without_a_server(browser, site):
    """What the README promises: open build/book/index.html straight from the disk."""
    context = browser.new_context()
    outside = []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        "file://") else (outside.append(route.request.url), route.abort()))
    try:
        page = context.new_page()
        errors = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto((site / "index.html").as_uri())
        page.locator("a[href='chapters/03_ill_conditioning.html']").click()
        page.wait_for_selector("html[data-book-math=done]", state="attached",
                               timeout=MATH_TIMEOUT_MS)
        assert page.url.endswith("/chapters/03_ill_conditioning.html")
        assert page.evaluate("""() => [...document.querySelectorAll('script[type^="math/tex"]')]
            .every(s => document.getElementById(s.id + '-Frame'))""")
        assert page.locator(".MathJax").count() > 50
        assert errors == [] and outside == []
    finally:
        context.close()


def test_index_links_every_chapter_and_chapters_their_exercises(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    for src, page in SITE.items():
        if src.startswith("chapters/") and src != book.INDEX:
            assert f'href="{page}"' in index, f"the home page does not link {page}"
            chapter = (site / page).read_text(encoding="utf-8")
            exercises = [p for s, p in SITE.items()
                         if s.startswith(f"exercises/ch{Path(src).name[:2]}/")]
            for ex in exercises:
                assert f'href="../{ex}"' in chapter, f"{page} does not link {ex}"


def test_animation_plays_offline(reader):
    """Chapter 12's stored animation (plots.animation_player): the page shows its animated GIF,
    drawn by the browser itself, with no script and nothing fetched from elsewhere."""
    import base64
    import io

    from PIL import Image

    src = "chapters/12_adam_and_its_family.ipynb"
    problems, page = reader.read(SITE[src], math=True)
    try:
        assert problems == []
        gif = page.locator("img[src^='data:image/gif']").first
        gif.wait_for(timeout=15_000)
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", gif.element_handle())
        data = base64.b64decode(gif.get_attribute("src").split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as im:
            assert getattr(im, "n_frames", 1) > 1, "the stored GIF is animated"
        gif.screenshot(path=str(ARTIFACTS / "chapters__12_animation.png"))
    finally:
        page.close()


def test_interactive_figures_say_how_to_use_them(site):
    for src, page in SITE.items():
        nb = nbformat.read(ROOT / src, as_version=4)
        widgets = sum(book.WIDGET_VIEW in o.get("data", {}) for c in nb.cells
                      if c.cell_type == "code" for o in c.outputs)
        text = (site / page).read_text(encoding="utf-8")
        assert text.count('class="book-widget-note"') == widgets, page
        assert book.WIDGET_VIEW not in text and "InteractivePlot(" not in text, page


def test_pages_are_relative_and_self_contained(site):
    for path in site.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        for leak in (str(ROOT), str(site), "/tmp/", "/root/", "file://"):
            assert leak not in text, f"{path.relative_to(site)} contains {leak!r}"


# --------------------------------------------------------------------------- no solutions
_SECRET = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)


def secret_lines(solution_nb: nbformat.NotebookNode) -> set[str]:
    """Lines of the instructor's notebook a student must not see (solutions, hidden tests,
    model answers) that appear nowhere else in it; whitespace-normalized, 16 characters or more."""
    secret, public = [], []
    for cell in solution_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            secret.append(cell.source)
            continue
        secret += [m.group(2) for m in _SECRET.finditer(cell.source)]
        public.append(_SECRET.sub("", cell.source))
    norm = lambda text: {" ".join(line.split()) for line in text.splitlines()}  # noqa: E731
    shown = set().union(*map(norm, public))
    return {line for block in secret for line in norm(block) if len(line) >= 16} - shown


def page_text(page_html: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", page_html, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split())


def leaked(solution_nb: nbformat.NotebookNode, page_html: str) -> list[str]:
    text = page_text(page_html)
    return sorted(line for line in secret_lines(solution_nb) if line in text)


def test_exercise_pages_show_no_solutions_and_no_hidden_tests(site):
    checked = 0
    for src, page in SITE.items():
        if not src.startswith("exercises/"):
            continue
        solution = nbformat.read(ROOT / "solutions" / Path(src).relative_to("exercises"),
                                 as_version=4)
        secrets = secret_lines(solution)
        assert secrets, f"no solution found in solutions/ for {src}: nothing would be checked"
        checked += len(secrets)
        text = (site / page).read_text(encoding="utf-8")
        assert leaked(solution, text) == [], f"{page} shows solution lines"
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):
            assert marker not in text, f"{page} shows {marker!r}"
        assert "NotImplementedError" in text, f"{page}: not the student version?"
    assert checked > 100


def test_the_solution_check_finds_a_leak():
    """Rendered from solutions/ instead of exercises/, the page leaks: the check says so."""
    src = "exercises/ch03/ch03_exercises.ipynb"
    solution = nbformat.read(ROOT / "solutions/ch03/ch03_exercises.ipynb", as_version=4)
    assert len(leaked(solution, book.render(solution, src, SITE))) >= 5


# --------------------------------------------------------------------------- the checks can fail
BROKEN_PAGE = """<!DOCTYPE html><html><head><title>broken</title></head><body>
<div class="jp-RenderedMarkdown"><p>A formula left raw: $x^2 + 1$.</p>
<a href="missing.html">a missing page</a> <a href="other.html#nowhere">a missing heading</a>
<a href="other.html#here">a good link</a> <a href="course.ipynb">a notebook</a></div>
<img src="https://cdn.example.invalid/logo.png" alt="">
<script>console.error("something broke");</script>
</body></html>"""


def test_the_browser_checks_fail_on_a_broken_page(browser, tmp_path):
    (tmp_path / "broken.html").write_text(BROKEN_PAGE)
    (tmp_path / "other.html").write_text('<html><body><h2 id="here">Here</h2></body></html>')
    (tmp_path / "course.ipynb").write_text("{}")
    with serve(tmp_path) as base:
        r = Reader(browser, base)
        try:
            problems, page = r.read("broken.html", math=True, math_timeout_ms=500)
            page.close()
        finally:
            r.close()
    report = "\n".join(problems)
    for expected in ("MathJax did not finish", "broken link: " + base + "missing.html (HTTP 404)",
                     "no element #nowhere", "link to a notebook",
                     "request to another host: https://cdn.example.invalid/logo.png",
                     "console error: something broke"):
        assert expected in report, f"{expected!r} not reported in:\n{report}"
    assert "#here" not in report
    assert r.outside == ["https://cdn.example.invalid/logo.png"]


def test_the_math_check_fails_on_unrendered_and_wrong_formulas(reader, site, tmp_path):
    """A page of the site whose formulas MathJax cannot read: errors in the console."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# Bad math\n\nAn unknown macro $\\notamacro{x}$ and a brace too many $x}$.")])
    page = "chapters/zz_bad_math.html"
    body = book.render(nb, "chapters/zz_bad_math.ipynb",
                       {**SITE, "chapters/zz_bad_math.ipynb": page})
    (site / page).write_text(body, encoding="utf-8")
    try:
        problems, p = reader.read(page, math=True)
        p.close()
    finally:
        (site / page).unlink()
    report = "\n".join(problems)
    assert "console error: MathJax: TeX error: Undefined control sequence \\notamacro" in report
    assert "formulas rendered as MathJax errors" in report


# --------------------------------------------------------------------------- the builder
def _notebook(*cells, outputs=()) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell(c) for c in cells]
    if outputs:
        nb.cells.append(nbformat.v4.new_code_cell("x", outputs=list(outputs)))
    return nb


def _course(tmp: Path, **notebooks: nbformat.NotebookNode) -> Path:
    """A small course under tmp: {"chapters/00_index.ipynb": nb, ...} (keys with / as __)."""
    default = {
        "chapters/00_index.ipynb": _notebook("# Home\n\n[One](01_one.ipynb)"),
        "chapters/01_one.ipynb": _notebook(
            "# One\n\nSee $x^2$, [home](00_index.ipynb#Home), "
            "[exercises](../exercises/ch01/ch01_exercises.ipynb), "
            '<a href="01_one.ipynb#One">here</a> and [a site](https://example.org/a.ipynb).',
            outputs=[nbformat.v4.new_output("display_data", data={
                book.WIDGET_VIEW: {"model_id": "m", "version_major": 2, "version_minor": 0},
                "text/plain": "InteractivePlot(controls: lr, steps)"}),
                nbformat.v4.new_output("display_data", data={
                    book.WIDGET_VIEW: {"model_id": "n", "version_major": 2, "version_minor": 0},
                    "image/png": "iVBORw0KGgo=", "text/plain": "InteractivePlot(controls: rho)"}),
                nbformat.v4.new_output("display_data", data={"text/html": (
                    '<link rel="stylesheet"\nhref="https://maxcdn.bootstrapcdn.com/font-awesome/'
                    '4.4.0/css/font-awesome.min.css">\n<div class="anim-buttons">'
                    '<button><i class="fa fa-play"></i></button></div>')})]),
        "exercises/ch01/ch01_exercises.ipynb": _notebook(
            "# Exercises\n\nBack to [the chapter](../../chapters/01_one.ipynb#One)."),
    }
    default.update({k.replace("__", "/"): v for k, v in notebooks.items()})
    for rel, nb in default.items():
        if nb is not None:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, tmp / rel)
    return tmp


def test_links_become_relative_page_links(tmp_path):
    root = _course(tmp_path / "course")
    book.build(root, tmp_path / "site")
    home = (tmp_path / "site/index.html").read_text()
    one = (tmp_path / "site/chapters/01_one.html").read_text()
    ex = (tmp_path / "site/exercises/ch01/ch01_exercises.html").read_text()
    assert 'href="chapters/01_one.html"' in home
    for link in ('href="../index.html#Home"', 'href="../exercises/ch01/ch01_exercises.html"',
                 'href="01_one.html#One"', 'href="https://example.org/a.ipynb"',
                 'src="../_static/mathjax/MathJax.js?config='):
        assert link in one, link
    assert 'href="../../chapters/01_one.html#One"' in ex
    assert "font-awesome" not in one and 'class="fa fa-play"' in one
    assert one.count('class="book-widget-note"') == 2
    assert "Here the notebook shows an interactive figure (controls: lr, steps)" in one
    assert "Above: the stored frame of an interactive figure (controls: rho)" in one
    assert one.count("data:image/png;base64,iVBORw0KGgo=") == 1
    assert (tmp_path / "site/_static/mathjax/MathJax.js").is_file()


@pytest.mark.parametrize("where, source, message", [
    ("chapters__01_one.ipynb", "# One\n\n[next](02_two.ipynb)",
     "chapters/01_one.ipynb, cell 0: the link '02_two.ipynb' leads to 'chapters/02_two.ipynb', "
     "which is not a page of the site"),
    ("chapters__01_one.ipynb", "# One\n\n[code](../course_lib/train.py)",
     "leads to 'course_lib/train.py', which is not a page of the site"),
    ("chapters__01_one.ipynb", "# One\n\n[heading](00_index.ipynb#No-such-heading)",
     "chapters/01_one.ipynb: '../index.html#No-such-heading': no heading or anchor"),
    ("chapters__01_one.ipynb", '# One\n\n<img src="https://example.org/pic.png">',
     "chapters/01_one.ipynb: loads 'https://example.org/pic.png' from another host"),
    ("exercises__ch01__ch01_exercises.ipynb", "# Ex\n\n```\n### BEGIN SOLUTION\n```",
     "exercises/ch01/ch01_exercises.ipynb contains nbgrader's solution or hidden-test markup"),
])
def test_the_builder_refuses_a_broken_course(tmp_path, where, source, message):
    root = _course(tmp_path / "course", **{where: _notebook(source)})
    with pytest.raises(book.BookError) as err:
        book.build(root, tmp_path / "site")
    assert message in str(err.value)


def test_the_builder_refuses_an_external_script_in_an_output(tmp_path):
    nb = _notebook("# One", outputs=[nbformat.v4.new_output("display_data", data={
        "text/html": '<script src="https://cdn.example.org/lib.js"></script>'})])
    root = _course(tmp_path / "course", **{"chapters__01_one.ipynb": nb})
    with pytest.raises(book.BookError, match="chapters/01_one.ipynb: loads "
                       "'https://cdn.example.org/lib.js' from another host"):
        book.build(root, tmp_path / "site")


def test_without_the_index_there_is_no_site(tmp_path):
    root = _course(tmp_path / "course", **{"chapters__00_index.ipynb": None})
    with pytest.raises(book.BookError, match="chapters/00_index.ipynb is missing"):
        book.build(root, tmp_path / "site")


def test_the_build_is_deterministic(tmp_path):
    """A build here and one in another process (another hash seed, another folder) give the
    same bytes."""
    root = _course(tmp_path / "course")
    book.build(root, tmp_path / "a/site")
    # as `make book` runs it: the script alone (the package's __init__ would import torch)
    subprocess.run([sys.executable, str(ROOT / "course_lib/tooling/book.py"), "build", "--root", str(root),
                    "--out", str(tmp_path / "b/elsewhere")],
                   check=True, env={**os.environ, "PYTHONHASHSEED": "12345"}, cwd=tmp_path,
                   stdout=subprocess.DEVNULL)
    trees = [{p.relative_to(tmp_path / out).as_posix(): p.read_bytes()
              for p in sorted((tmp_path / out).rglob("*")) if p.is_file()}
             for out in ("a/site", "b/elsewhere")]
    assert trees[0].keys() == trees[1].keys() and trees[0] == trees[1]
    for name, data in trees[0].items():
        if name.endswith(".html"):
            assert str(tmp_path).encode() not in data, name


def test_a_rebuild_removes_stale_pages(tmp_path):
    root = _course(tmp_path / "course")
    out = tmp_path / "site"
    (out / "chapters").mkdir(parents=True)
    (out / "chapters/99_old.html").write_text("old")
    book.build(root, out)
    assert not (out / "chapters/99_old.html").exists()
    assert json.dumps(sorted(p.name for p in out.iterdir())) == \
        json.dumps(["_static", "chapters", "exercises", "index.html"])
