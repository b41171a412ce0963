"""Checks on the rendered site (the smoke book that `make test` builds before pytest runs).

Skipped with a message where no built site exists (e.g. `pytest tests` alone); set
POISONLIB_SITE to check another build (e.g. `_build/html` after `make book`).
"""

import os
import re
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = os.environ.get("POISONLIB_SITE", os.path.join(ROOT, "_build", "smoke", "_build", "html"))

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(SITE, "index.html")),
                                reason=f"no built site at {SITE} (run `make test`, or set POISONLIB_SITE)")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if tag in ("a", "img", "link", "script") and a.get(key):
                self.links.append(a[key])


def _pages():
    for d, _, files in os.walk(SITE):
        if "_static" in d or "_sources" in d:
            continue
        for f in files:
            if f.endswith(".html"):
                yield os.path.join(d, f)


def _parse(path):
    p = _Links()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    return p


def test_no_broken_internal_links():
    ids = {path: _parse(path).ids for path in _pages()}
    broken = []
    for page in ids:
        for link in _parse(page).links:
            u = urlsplit(link)
            if u.scheme or u.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue  # external: never contacted here
            target = page if not u.path else os.path.normpath(os.path.join(os.path.dirname(page), unquote(u.path)))
            if not os.path.exists(target):
                broken.append(f"{os.path.relpath(page, SITE)} -> {link}")
            elif u.fragment and target.endswith(".html") and u.fragment not in ids.get(target, set()):
                broken.append(f"{os.path.relpath(page, SITE)} -> {link} (no such anchor)")
    assert not broken, f"{len(broken)} broken internal link(s), e.g. {broken[:5]}"


def test_every_chapter_page_is_rendered_without_errors():
    bad = []
    for page in _pages():
        text = open(page, encoding="utf-8").read()
        if re.search(r"Traceback \(most recent call last\)|class=\"[^\"]*output error|>\?\?<|Citation \[|unknown document", text):
            bad.append(os.path.relpath(page, SITE))
    assert not bad, f"pages showing an error, traceback or unresolved reference: {bad}"


def test_footer_shows_the_version_and_every_chapter_its_profile():
    import poisonlib

    intro = open(os.path.join(SITE, "book", "intro.html"), encoding="utf-8").read()
    assert f"poisonlib {poisonlib.__version__}" in intro
    chapters = os.path.join(SITE, "book", "executed")
    for f in sorted(os.listdir(chapters)):
        if f.endswith(".html"):
            text = open(os.path.join(chapters, f), encoding="utf-8").read()
            assert re.search(r"profile: (smoke|cpu|paper)", text), f"{f} does not say which profile produced it"


def test_no_page_shows_a_path_of_the_build_machine():
    """Warnings, tracebacks or reprs leak absolute paths (the venv, the checkout, the build folder)
    into outputs; no built page may contain one."""
    import sys

    build = os.path.dirname(os.path.dirname(os.path.abspath(SITE)))  # the --path-output folder
    paths = {p for p in (ROOT, build, sys.prefix, os.path.realpath(sys.prefix), os.path.expanduser("~")) if len(p) > 1}
    leaks = []
    downloads = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(SITE, "_sources")) for f in fs if f.endswith(".ipynb")]
    for page in [*_pages(), *downloads]:  # the pages and the notebooks their download button serves
        text = open(page, encoding="utf-8").read()
        leaks += [f"{os.path.relpath(page, SITE)}: {p}" for p in sorted(paths) if p in text]
    assert not leaks, f"{len(leaks)} page(s) contain a path of the build machine, e.g. {leaks[:5]}"


def test_papermill_injected_parameters_are_not_shown():
    shown = [os.path.relpath(p, SITE) for p in _pages() if "injected-parameters" in open(p, encoding="utf-8").read()]
    assert not shown, f"pages showing papermill's injected-parameters cell: {shown[:5]}"


def test_math_renderer_is_served_from_the_site_itself():
    """Formulas render offline: every page loads MathJax from the site's ``_static``, not a CDN."""
    offsite = []
    for page in _pages():
        scripts = [s for s in _parse(page).links if "mathjax" in s.lower()]
        if any(urlsplit(s).scheme or urlsplit(s).netloc for s in scripts):
            offsite.append(os.path.relpath(page, SITE))
    assert not offsite, f"pages loading MathJax from the network: {offsite[:5]}"
    assert os.path.exists(os.path.join(SITE, "_static", "mathjax", "tex-chtml.js"))
