"""The rendered site in headless Chromium: what a reader sees, and screenshots.

Opens every page of the built smoke book (the one `make test` builds before pytest runs;
POISONLIB_SITE checks another build, e.g. `_build/html` after `make book`) in headless
Chromium through Selenium and fails when a page shows a Python traceback, an error
output, a figure that did not load, an unresolved citation / glue / cross-reference, or
a formula MathJax left as raw TeX or could not typeset (the browser has no network: the
site serves MathJax itself).
Screenshots of the front page and of a table chapter go to POISONLIB_SCREENSHOTS
(default `_build/screenshots`).

Skipped, with the reason, where Chromium, chromedriver or Selenium is missing (install
the OS packages `chromium chromium-driver`, as `.ci/run` does); with
POISONLIB_REQUIRE_BROWSER=1 (set by `.ci/run`) a missing browser fails instead.
"""

import os
import shutil
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = os.path.abspath(os.environ.get("POISONLIB_SITE", os.path.join(ROOT, "_build", "smoke", "_build", "html")))
SHOTS = os.path.abspath(os.environ.get("POISONLIB_SCREENSHOTS", os.path.join(ROOT, "_build", "screenshots")))
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
TABLE_CHAPTER = "book/executed/gc_table2.html"


def _missing() -> str | None:
    if not os.path.exists(os.path.join(SITE, "index.html")):
        return f"no built site at {SITE} (run `make test`, or set POISONLIB_SITE)"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "headless Chromium not installed (OS packages `chromium` and `chromium-driver`)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e '.[test]')"
    return None


_REASON = _missing()
if _REASON and os.environ.get("POISONLIB_REQUIRE_BROWSER") == "1" and "no built site" not in _REASON:
    raise RuntimeError(f"POISONLIB_REQUIRE_BROWSER=1 but {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _pages() -> list[str]:
    pages = []
    for d, _, files in os.walk(os.path.join(SITE, "book")):
        pages += [os.path.relpath(os.path.join(d, f), SITE) for f in files if f.endswith(".html")]
    return sorted(pages)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="poisonlib-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1024",
                 f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


# What a page shows (its text and rendered elements), read in the browser after it loaded
# and MathJax finished typesetting (or after 20 s, when MathJax did not load at all).
_INSPECT = """
const done = arguments[arguments.length - 1];
const until = Date.now() + 20000;
const wait = () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(inspect, inspect);
  else if (Date.now() < until) setTimeout(wait, 100);
  else inspect();
};
const inspect = () => {
const text = document.body.innerText;
const q = s => [...document.querySelectorAll(s)];
done({
  article: !!document.querySelector('article.bd-article'),
  text: text,
  tracebacks: q('.output.traceback, .output.error, div.cell_output .traceback').length,
  broken_images: q('img').filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')),
  images: q('img').length,
  tables: q('div.cell_output table.dataframe').length,
  table_labels: q('div.cell_output .poisonlib-profile').length,
  unresolved: q('.xref.std-ref:not(a), span.problematic, .system-message').map(e => e.innerText.slice(0, 80)),
  typeset: q('mjx-container').length,
  math_errors: q('mjx-merror').map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 80)),
  raw_tex: q('.math').filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
});
};
wait();
"""


def _open(browser, page):
    from pathlib import Path

    browser.get(Path(SITE, page).as_uri())
    browser.execute_script("return new Promise(r => document.readyState === 'complete' ? r() : addEventListener('load', () => r()))")
    seen = browser.execute_async_script(_INSPECT)
    assert seen["article"], f"{page} did not load as a book page: {seen['text'][:200]!r}"
    return seen


@pytest.mark.parametrize("page", _pages() if _REASON is None else [])
def test_page_shows_no_error_and_every_figure_loads(browser, page):
    seen = _open(browser, page)
    assert seen["tracebacks"] == 0, f"{page}: {seen['tracebacks']} error / traceback output(s)"
    assert "Traceback (most recent call last)" not in seen["text"], f"{page} shows a Python traceback"
    assert not seen["broken_images"], f"{page}: figures that did not load: {seen['broken_images']}"
    assert not seen["unresolved"], f"{page}: unresolved references: {seen['unresolved']}"
    assert not seen["raw_tex"], f"{page}: {len(seen['raw_tex'])} formula(s) shown as raw TeX, e.g. {seen['raw_tex'][:3]}"
    assert not seen["math_errors"], f"{page}: MathJax could not typeset {seen['math_errors'][:3]}"
    for raw in ("{cite}", "{glue", "{ref}", "{numref}", "??"):
        assert raw not in seen["text"], f"{page} shows an unresolved {raw!r}"
    if page.startswith("book/executed/"):  # every table says which profile produced it (figures carry it in the image)
        assert seen["table_labels"] >= seen["tables"], f"{page}: {seen['tables'] - seen['table_labels']} table(s) without their profile"


def _screenshot(browser, page, name):
    from PIL import Image

    _open(browser, page)
    height = browser.execute_script("return Math.min(document.documentElement.scrollHeight, 6000)")
    browser.set_window_size(1280, max(height, 800))
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name)
    assert browser.save_screenshot(path), f"no screenshot of {page}"
    browser.set_window_size(1280, 1024)
    with Image.open(path) as im:
        lo, hi = im.convert("L").getextrema()
        assert im.width >= 1000 and hi - lo > 100, f"{path} is blank"
    return path


def test_screenshots_of_the_front_page_and_a_table_chapter(browser):
    intro = _screenshot(browser, "book/intro.html", "index.png")
    table = _screenshot(browser, TABLE_CHAPTER, "table_chapter.png")
    seen = _open(browser, TABLE_CHAPTER)
    assert seen["images"] >= 1 and "profile:" in seen["text"] and "Table 2" in seen["text"]
    assert _open(browser, "book/intro.html")["typeset"] > 0, "no formula typeset on the front page"
    print(f"screenshots: {intro} {table}")
