"""Sphinx extension for the book (listed in ``_config.yml``'s ``extra_extensions``).

Sphinx adds MathJax only to pages whose *body* has a formula, but the sidebar of every
page shows chapter titles such as "τ(2) and τ(c)" written in TeX: without MathJax those
pages (e.g. the references) would show the raw TeX. The ``"always"`` asset policy loads
MathJax (served from ``_static`` by ``sphinx-mathjax-offline``) on every page.
"""


def setup(app):
    app.set_html_assets_policy("always")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
