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

    with pytest.raises(SystemExit) as e:
        main(["book", "--profile", "huge"])
    assert e.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def _tiny_root(tmp_path, body="x = 1"):
    (tmp_path / "_config.yml").write_text("title: t\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    nb = tmp_path / "notebooks"
    nb.mkdir(exist_ok=True)
    (nb / "ch.md").write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n  name: python3\n  display_name: Python 3\n---\n\n"
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
    assert "executing ch" in capsys.readouterr().out
    build_book("smoke", build=False, root=str(root))  # unchanged: not re-run
    assert "unchanged since its last run" in capsys.readouterr().out
    build_book("cpu", build=False, root=str(root))  # other parameters: re-run
    assert "executing ch" in capsys.readouterr().out
    _tiny_root(tmp_path, body="x = 2")  # other source: re-run
    build_book("cpu", build=False, root=str(root))
    assert "executing ch" in capsys.readouterr().out
    build_book("cpu", build=False, root=str(root), force=True)
    assert "executing ch" in capsys.readouterr().out
