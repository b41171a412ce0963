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
