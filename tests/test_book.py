import os

import pytest

from poisonlib import PoisonlibError
from poisonlib.book import find_root, notebook_sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_find_root_walks_up(tmp_path):
    assert find_root(os.path.join(ROOT, "poisonlib", "attacks")) == ROOT
    with pytest.raises(PoisonlibError, match="no _config.yml"):
        find_root(str(tmp_path))


def test_notebook_sources_and_only():
    names = [os.path.basename(p) for p in notebook_sources(ROOT)]
    assert "gc_table2.md" in names
    assert [os.path.basename(p) for p in notebook_sources(ROOT, ["gc_table2"])] == ["gc_table2.md"]
    with pytest.raises(PoisonlibError, match="unknown chapter 'table99'"):
        notebook_sources(ROOT, ["table99"])


def test_book_cli_rejects_unknown_profile(capsys):
    from poisonlib.cli import main

    assert main(["book", "--profile", "huge"]) == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def _tiny_root(tmp_path, body="x = 1"):
    (tmp_path / "_config.yml").write_text("title: t\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    nb = tmp_path / "notebooks"
    nb.mkdir(exist_ok=True)
    (nb / "ch.md").write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n    format_version: 0.13\n"
        "kernelspec:\n  name: python3\n  display_name: Python 3\n---\n\n"
        "```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = 'cpu'\ndevice = 'auto'\ndata_root = None\n```\n\n"
        f"```{{code-cell}} ipython3\n{body}\nprint(profile)\n```\n"
    )
    return tmp_path


def test_executed_chapters_are_cached_by_source_parameters_and_code(tmp_path, capsys):
    import json

    from poisonlib.book import build_book, cache_key

    root = _tiny_root(tmp_path)
    build_book("smoke", build=False, root=str(root))
    dst = root / "book" / "executed" / "ch.ipynb"
    meta = json.loads(dst.read_text())["metadata"]["poisonlib"]
    assert meta["parameters"]["profile"] == "smoke"
    assert meta["cache_key"] == cache_key(str(root / "notebooks" / "ch.md"), meta["parameters"])
    injected = [c for c in json.loads(dst.read_text())["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"]  # not repeated on the page
    out = capsys.readouterr().out
    assert "executing ch" in out and "0 cell(s) computed" in out
    assert json.loads((root / "book" / "executed" / "timings.json").read_text())["smoke"]["ch"] > 0  # the performance chapter's input
    assert str(tmp_path) not in dst.read_text()  # no path of the build machine in the downloadable notebook
    footer = json.loads(dst.read_text())["cells"][-1]  # the page says how long it took, at which profile, on what
    assert footer["cell_type"] == "markdown" and "profile `smoke`" in footer["source"] and "computed 0 cell(s)" in footer["source"]
    build_book("smoke", build=False, root=str(root), force=True)  # re-run: one footer, not two
    assert sum(c.get("id") == "poisonlib-footer" for c in json.loads(dst.read_text())["cells"]) == 1
    capsys.readouterr()
    build_book("smoke", build=False, root=str(root))  # unchanged: not re-run
    assert "unchanged since its last run" in capsys.readouterr().out
    build_book("cpu", build=False, root=str(root))  # other parameters: re-run
    assert "executing ch" in capsys.readouterr().out
    _tiny_root(tmp_path, body="x = 2")  # other source: re-run
    build_book("cpu", build=False, root=str(root))
    assert "executing ch" in capsys.readouterr().out
    build_book("cpu", build=False, root=str(root), force=True)
    assert "executing ch" in capsys.readouterr().out


def test_sources_only_writes_the_notebooks_binder_opens_and_keeps_executed_ones(tmp_path, capsys):
    import json

    from poisonlib.cli import main

    root = _tiny_root(tmp_path)
    assert main(["book", "--sources-only", "--root", str(root)]) == 0
    nb = json.loads((root / "book" / "executed" / "ch.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in cells[0]["metadata"]["tags"] and not any(c.get("outputs") for c in cells)
    (root / "book" / "executed" / "ch.ipynb").write_text("executed")
    assert main(["book", "--sources-only", "--root", str(root)]) == 0
    assert (root / "book" / "executed" / "ch.ipynb").read_text() == "executed"
    assert "wrote 0 notebook(s)" in capsys.readouterr().out


def test_binder_post_build_writes_what_the_launch_buttons_open():
    import yaml

    with open(os.path.join(ROOT, "_config.yml")) as f:
        cfg = yaml.safe_load(f)
    with open(os.path.join(ROOT, "_toc.yml")) as f:
        toc = f.read()
    post = open(os.path.join(ROOT, ".binder", "postBuild")).read()
    # Binder opens <path_to_book>/<page>.ipynb; the chapters' pages are book/executed/<name>, written by postBuild
    assert cfg["launch_buttons"]["binderhub_url"] and cfg["repository"]["path_to_book"] == ""
    assert "book/executed/gc_table2" in toc and "poisonlib book --sources-only" in post and "whl/cpu" in post
    # Colab would open the same path straight from GitHub, where no .ipynb is committed: no Colab button
    assert "colab_url" not in cfg["launch_buttons"]
    assert os.access(os.path.join(ROOT, ".binder", "postBuild"), os.X_OK)


def test_figures_shown_in_an_executed_chapter_carry_the_profile(tmp_path):
    """Through papermill and the inline backend, as the book runs its chapters: plt.show() and a
    cell's last figure are both stamped, and DataFrames get their caption."""
    import json

    from poisonlib.book import build_book

    body = ("from poisonlib import plots\nplots.label_outputs(profile)\nimport matplotlib.pyplot as plt\nimport pandas as pd\n"
            "fig, ax = plt.subplots()\nax.plot([0, 1])\nplt.show()\nprint('shown:', fig._poisonlib_label)\n"
            "display(pd.DataFrame({'a': [1]}))")
    root = _tiny_root(tmp_path, body=body)
    build_book("smoke", build=False, root=str(root))
    nb = json.loads((root / "book" / "executed" / "ch.ipynb").read_text())
    outs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    text = "".join("".join(o.get("text", "")) for o in outs)
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in outs)
    assert any("image/png" in o.get("data", {}) for o in outs)
    assert "shown: profile: smoke · poisonlib" in text and "profile: smoke · poisonlib" in html


def test_a_chapter_reruns_on_other_grid_axes_under_papermill(tmp_path, monkeypatch):
    """The book's second use: re-execute one chapter with other axes, as `papermill -p` passes them
    (strings), and get a table with exactly those rows."""
    import json

    from poisonlib.book import _kernel_env, execute_notebook

    for k, v in _kernel_env(ROOT).items():  # this interpreter's kernel; the test's own results store
        monkeypatch.setenv(k, v)
    dst = tmp_path / "tgda_targets.ipynb"
    params = {"profile": "smoke", "protocols": '["paper"]', "models": "['lr']", "eps_ds": "[0.1, 0.3]"}
    execute_notebook(os.path.join(ROOT, "notebooks", "tgda_targets.md"), str(dst), params, cwd=ROOT)
    nb = json.loads(dst.read_text())
    texts = ["".join(o.get("data", {}).get("text/plain", "")) for c in nb["cells"] for o in c.get("outputs", [])]
    table = next(t for t in texts if t.startswith("Table 9"))
    lines = table.splitlines()[2:]  # caption, header, then one line per row
    assert len(lines) == 2 and all(line.split()[:2] in (["LR", "0.1"], ["LR", "0.3"]) for line in lines), table
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "<caption>Table 9" in html and "profile: smoke" in html
