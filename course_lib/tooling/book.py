"""The course as a static website: ``make book``, i.e. ``python course_lib/tooling/book.py build``
(or ``python -m course_lib.tooling.book build``, which also imports the rest of course_lib).

Every page is a stored notebook, rendered as it is (nothing is executed) by nbconvert's
JupyterLab template::

    chapters/00_index.ipynb          ->  index.html                      (the home page)
    chapters/NN_name.ipynb           ->  chapters/NN_name.html
    exercises/chNN/chNN_*.ipynb      ->  exercises/chNN/chNN_*.html      (the student versions)

The exercise pages come from ``exercises/`` (generated from ``solutions/`` without solutions and
hidden tests); ``solutions/`` is never read.  Links between notebooks are rewritten to the pages.
Interactive figures have no kernel on a website: the page shows their stored static output (a
frame, when one was stored) with a note saying which controls the notebook offers.

Offline: math is typeset in the reader's browser by MathJax 2.7, copied from the
``jupyter-server-mathjax`` package into ``_static/mathjax/`` (nbconvert's template is written for
MathJax 2); figures are embedded in the pages.  Nothing is fetched from another host when a page
is read, from a web server or straight from the folder.  The build stops, naming the notebook, on
a link to something that is not part of the site (a notebook outside ``chapters/`` and
``exercises/``, a missing file or heading) and on an output that would load a script, style, font
or image from another host.  Output is deterministic: no timestamps, no absolute paths.
"""
from __future__ import annotations

import argparse
import html
import posixpath
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file: course_lib/tooling/book.py)
INDEX = "chapters/00_index.ipynb"
STATIC = "_static"
MATHJAX = f"{STATIC}/mathjax"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"  # the combined build jupyter-server-mathjax ships
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class BookError(Exception):
    """The course cannot be published as it is; the message names the notebook and what to fix."""


# --------------------------------------------------------------------------- the pages
def pages(root: Path = ROOT) -> dict[str, str]:
    """Source notebook -> page, both relative to the site's root (posix paths), in reading order:
    the index, the chapters, the exercises."""
    root = Path(root)
    if not (root / INDEX).is_file():
        raise BookError(f"{INDEX} is missing under {root}: it is the home page of the site")
    found = {INDEX: "index.html"}
    sources = sorted((root / "chapters").glob("*.ipynb")) + sorted(
        (root / "exercises").glob("ch*/*.ipynb"))
    for nb in sources:
        rel = nb.relative_to(root).as_posix()
        found.setdefault(rel, rel.removesuffix(".ipynb") + ".html")
    return found


def _nav(src: str, site: dict[str, str]) -> list[tuple[str, str]]:
    """(page, label) pairs shown at the top of a page: the index, the neighbouring chapters, the
    chapter's exercises (or an exercise's chapter)."""
    chapters = [s for s in site if s.startswith("chapters/") and s != INDEX]
    nav = [] if src == INDEX else [(site[INDEX], "Course index")]
    if src in chapters:
        i = chapters.index(src)
        if i > 0:
            nav.append((site[chapters[i - 1]], "← Previous chapter"))
        if i + 1 < len(chapters):
            nav.append((site[chapters[i + 1]], "Next chapter →"))
        number = Path(src).name[:2]
        nav += [(site[s], "Exercises") for s in site if s.startswith(f"exercises/ch{number}/")]
    elif src.startswith("exercises/"):
        number = Path(src).parent.name.removeprefix("ch")
        nav += [(site[s], f"Chapter {int(number)}") for s in chapters
                if Path(s).name.startswith(f"{number}_")]
    return nav


# --------------------------------------------------------------------------- notebook -> page
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_MD_LINK = re.compile(r"(\]\(\s*<?)([^\s)>]+)")                      # [text](target "title")
_MD_REF = re.compile(r"^( {0,3}\[[^\]]+\]:\s*<?)([^\s>]+)", re.M)    # [label]: target
_HTML_URL = re.compile(r"""(\b(?:href|src)\s*=\s*["'])([^"']+)""")  # <a href="target">
_FONT_AWESOME = re.compile(r"<link\b[^>]*\bhref=[\"']https?://[^\"']*font-awesome[^\"']*[\"'][^>]*>")


def _relative(target: str, src: str, site: dict[str, str], where: str) -> str:
    """A link of the notebook `src` rewritten for its page: notebooks become their pages."""
    if _SCHEME.match(target) or target.startswith("#"):
        return target  # another site, mailto:, data:, or a heading of the same page
    path, hash_, fragment = target.partition("#")
    if path.startswith("/"):
        raise BookError(f"{where}: the link {target!r} is an absolute path; write it relative "
                        f"to the notebook, e.g. ../exercises/ch01/ch01_exercises.ipynb")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(src), unquote(path)))
    if resolved not in site:
        raise BookError(f"{where}: the link {target!r} leads to {resolved!r}, which is not a page "
                        f"of the site (pages: {INDEX}, chapters/*.ipynb, "
                        f"exercises/chNN/*.ipynb)")
    page = posixpath.relpath(site[resolved], posixpath.dirname(site[src]))
    return page + hash_ + fragment


def _rewrite_links(text: str, src: str, site: dict[str, str], where: str) -> str:
    def sub(match: re.Match) -> str:
        return match.group(1) + _relative(match.group(2), src, site, where)
    for pattern in (_MD_LINK, _MD_REF, _HTML_URL):
        text = pattern.sub(sub, text)
    return text


def _widget_note(label: str, has_frame: bool) -> dict:
    controls = re.search(r"controls: ([^)]*)", label)
    what = f"an interactive figure (controls: {html.escape(controls.group(1))})" if controls \
        else "an interactive figure"
    text = (f"Above: the stored frame of {what}." if has_frame else
            f"Here the notebook shows {what}.") + \
        " Open the notebook in JupyterLab and run it to move the controls."
    return nbformat.v4.new_output("display_data", data={
        "text/html": f'<p class="book-widget-note">{text}</p>', "text/plain": text})


def prepare(nb: nbformat.NotebookNode, src: str, site: dict[str, str]) -> nbformat.NotebookNode:
    """The notebook as its page shows it (a copy): links rewritten, widgets replaced by their
    static output and a note, the title taken from the first heading."""
    nb = nbformat.from_dict(nb)
    for i, cell in enumerate(nb.cells):
        where = f"{src}, cell {i}"
        if cell.cell_type == "markdown":
            cell.source = _rewrite_links(cell.source, src, site, where)
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if "application/javascript" in out.get("data", {}):
                raise BookError(f"{where}: an application/javascript output cannot be shown "
                                f"on the website; store HTML, an image or text instead")
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            data = out.get("data", {})
            if "text/html" in data:
                data["text/html"] = _FONT_AWESOME.sub("", data["text/html"])
            if "image/gif" in data and "text/html" not in data:
                # nbconvert shows no GIF (not in its display priority): an <img> the browser
                # animates by itself (plots.animation_player's stored frames)
                gif = "".join(str(data.pop("image/gif")).split())
                data["text/html"] = (f'<img src="data:image/gif;base64,{gif}" '
                                     f'alt="animation (plays by itself)">')
            if WIDGET_VIEW not in data:
                outputs.append(out)
                continue
            label = data.pop(WIDGET_VIEW) and data.get("text/plain", "")
            has_frame = bool(set(data) - {"text/plain"})
            if has_frame:
                outputs.append(out)
            outputs.append(_widget_note(label, has_frame))
        cell.outputs = outputs
    title = next((m.group(1).strip() for c in nb.cells if c.cell_type == "markdown"
                  for m in [re.search(r"^# (.+)$", c.source, re.M)] if m), None)
    if title:
        nb.metadata["title"] = re.sub(r"[*_`]", "", title)
    return nb


_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{#- The lab template passes Pygments' output (which escapes the code) through bleach too: the
    slowest step of the build by far, and a no-op on stored code. -#}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
     <div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
     </div>
</div>
{%- endblock input %}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true},
        noErrors: {disabled: true}, noUndefined: {disabled: true}},
  // The STIX-Web fonts the package ships. MathJax_Blank is MathJax's stand-in for a font that
  // has not loaded; its url('about:blank') is a console error in today's browsers: local() is not.
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}},
  // no quick preview typeset before the real one: half the work on a page full of formulas
  "fast-preview": {disabled: true},
  displayAlign: "center", messageStyle: "none", menuSettings: {zoom: "None"}
});
// A formula MathJax cannot typeset is an error in the console (the website's test reads it).
MathJax.Hub.Register.MessageHook("TeX Jax - parse error", function (m) {
  console.error("MathJax: TeX error: " + m[1]);
});
MathJax.Hub.Register.MessageHook("Math Processing Error", function (m) {
  console.error("MathJax: processing error: " + (m[2] && m[2].message));
});
MathJax.Hub.Register.StartupHook("End", function () {
  document.documentElement.setAttribute("data-book-math", "done");
});
</script>
<script src="{{ resources.book_root }}{{ resources.book_mathjax }}/MathJax.js?config={{ resources.book_mathjax_config }}"></script>
{%- endblock html_head_js_mathjax -%}
{%- block extra_css -%}
<style type="text/css">
nav.book-nav { display: flex; max-width: 1200px; margin: 0 auto; padding: 8px 16px;
  font-family: var(--jp-ui-font-family); font-size: 14px;
  border-bottom: 1px solid var(--jp-border-color2); }
nav.book-nav a { margin-right: 1.5em; }
nav.book-nav .book-source { margin-left: auto; color: var(--jp-ui-font-color2); }
main { max-width: 1200px; margin: 0 auto; }
/* The hidden MathML for screen readers would ask for MathJax's TeX fonts (not in the package) */
.MJX_Assistive_MathML, .MJX_Assistive_MathML * { font-family: serif !important; }
p.book-widget-note { font-style: italic; color: var(--jp-ui-font-color2); margin: 0.3em 0; }
/* matplotlib's animation controls ask for Font Awesome from a CDN: plain characters instead */
.anim-buttons .fa { font-style: normal; font-family: sans-serif; }
.fa-fast-backward::before { content: "|\25C0\25C0"; }  .fa-step-backward::before { content: "|\25C0"; }
.fa-play::before { content: "\25B6"; }  .fa-pause::before { content: "\275A\275A"; }
.fa-step-forward::before { content: "\25B6|"; }  .fa-fast-forward::before { content: "\25B6\25B6|"; }
.fa-minus::before { content: "\2212"; }  .fa-plus::before { content: "+"; }
.fa-flip-horizontal { display: inline-block; transform: scaleX(-1); }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
<nav class="book-nav">
{%- for href, label in resources.book_nav %}<a href="{{ href }}">{{ label }}</a>{% endfor -%}
<span class="book-source">{{ resources.book_source }}</span></nav>
{%- endblock body_header -%}
"""


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    return HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"book.html.j2": _TEMPLATE})],
                        template_file="book.html.j2", exclude_input_prompt=True,
                        exclude_output_prompt=True)


def render(nb: nbformat.NotebookNode, src: str, site: dict[str, str], exporter=None) -> str:
    """The HTML page of the notebook `src` (relative to the repository)."""
    page_dir = posixpath.dirname(site[src])
    root = "" if not page_dir else posixpath.relpath(".", page_dir) + "/"
    resources = {
        "book_root": root, "book_mathjax": MATHJAX, "book_mathjax_config": MATHJAX_CONFIG,
        "book_source": src, "metadata": {"name": Path(src).stem},
        "book_nav": [(posixpath.relpath(page, page_dir or "."), label)
                     for page, label in _nav(src, site)],
    }
    body, _ = (exporter or _exporter()).from_notebook_node(prepare(nb, src, site), resources)
    return body


# --------------------------------------------------------------------------- checks of the output
_RESOURCE_ATTRS = {"script": ("src",), "link": ("href",), "img": ("src", "srcset"),
                   "iframe": ("src",), "source": ("src", "srcset"), "video": ("src", "poster"),
                   "audio": ("src",), "embed": ("src",), "object": ("data",), "input": ("src",)}
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])((?:https?:)?//[^"')\s]+)""")


class _Refs(HTMLParser):
    """The ids, links and loaded resources of one page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        for key in _RESOURCE_ATTRS.get(tag, ()):
            if attrs.get(key):
                self.resources += [u.split()[0] for u in attrs[key].split(",")] \
                    if key == "srcset" else [attrs[key]]


def _is_external(url: str) -> bool:
    return url.startswith("//") or urlsplit(url).scheme in ("http", "https", "ftp", "ws", "wss")


def check_site(out: Path, site: dict[str, str]) -> None:
    """Every internal link of every page leads to a page (and heading) or file of the site, and
    no page loads anything from another host; BookError names all the problems."""
    out = Path(out)
    parsed: dict[str, _Refs] = {}
    problems = []
    source_of = {page: src for src, page in site.items()}
    for page in site.values():
        text = (out / page).read_text(encoding="utf-8")
        refs = parsed[page] = _Refs()
        refs.feed(text)
        for url in refs.resources + _CSS_URL.findall(text):
            if _is_external(url):
                problems.append(f"{source_of[page]}: loads {url[:120]!r} from another host")
    for page, refs in parsed.items():
        for url in refs.links + [u for u in refs.resources if not _is_external(u)]:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc:
                continue  # a link to another site, data: and the like
            target = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(parts.path))) \
                if parts.path else page
            if target.startswith("../") or not (out / target).is_file():
                problems.append(f"{source_of[page]}: {url!r} leads to {target!r}, "
                                f"which is not in the site")
            elif parts.fragment and target in parsed and not \
                    {parts.fragment, unquote(parts.fragment)} & parsed[target].ids:
                # a browser looks for the id as written, then percent-decoded
                problems.append(f"{source_of[page]}: {url!r}: no heading or anchor "
                                f"#{unquote(parts.fragment)} on {target}")
    if problems:
        raise BookError("the site has broken links or external resources:\n  " +
                        "\n  ".join(problems))


# --------------------------------------------------------------------------- the build
def _copy_mathjax(out: Path) -> None:
    """MathJax into the site, unless the same version is there from the last build."""
    from importlib.metadata import version
    import jupyter_server_mathjax
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = out / MATHJAX
    stamp = f"jupyter-server-mathjax {version('jupyter-server-mathjax')}\n"
    if (target / ".source").is_file() and (target / ".source").read_text() == stamp:
        return
    if target.is_dir():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    (target / ".source").write_text(stamp)


def build(root: Path = ROOT, out: Path = ROOT / "build" / "book") -> list[Path]:
    """Write the site into `out` and check it; returns the pages written.  Whatever else `out`
    held is removed (so that no stale page survives), except an up-to-date copy of MathJax."""
    root, out = Path(root), Path(out)
    site = pages(root)
    out.mkdir(parents=True, exist_ok=True)
    for entry in out.iterdir():  # empty it, keeping MathJax (600 files) when it is up to date
        if entry.name != STATIC:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in (out / STATIC).iterdir() if (out / STATIC).is_dir() else ():
        if entry.name != Path(MATHJAX).name:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    exporter = _exporter()
    written = []
    for src, page in site.items():
        if src.startswith("exercises/"):
            text = (root / src).read_text(encoding="utf-8")
            if "BEGIN SOLUTION" in text or "BEGIN HIDDEN TESTS" in text:
                raise BookError(f"{src} contains nbgrader's solution or hidden-test markup: "
                                f"exercises/ must hold the student versions (make exercises)")
        nb = nbformat.read(root / src, as_version=4)
        target = out / page
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(nb, src, site, exporter), encoding="utf-8")
        written.append(target)
    _copy_mathjax(out)
    check_site(out, site)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.tooling.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the site")
    b.add_argument("--out", type=Path, default=ROOT / "build" / "book",
                   help="output folder, emptied first (default: build/book)")
    b.add_argument("--root", type=Path, default=ROOT,
                   help="the course: a folder with chapters/ and exercises/ (default: this one)")
    args = parser.parse_args(argv)
    try:
        written = build(args.root, args.out)
    except BookError as e:
        print(f"make book: {e}", file=sys.stderr)
        return 1
    print(f"{len(written)} pages in {args.out}; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
