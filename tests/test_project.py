"""The project's layout and install contract: toolchain pairs, notebooks, book config."""

import os
import re
import tomllib

import jupytext
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_torch_and_torchvision_are_a_working_pair():
    import torch
    import torchvision

    # a mismatched pair fails here with "operator torchvision::nms does not exist"
    keep = torchvision.ops.nms(torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]), torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]


def _requirements():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        proj = tomllib.load(f)["project"]
    reqs = list(proj["dependencies"])
    for extra in proj["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("poisonlib")]
    return reqs


def _norm(req):
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    with open(os.path.join(ROOT, "environment.yml")) as f:
        env = yaml.safe_load(f)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_norm(r) for r in pip if not r.startswith("-e")}
    assert listed == {_norm(r) for r in _requirements()}
    assert any(r.startswith("-e") for r in pip)  # installs poisonlib itself


def _notebooks():
    folder = os.path.join(ROOT, "notebooks")
    return sorted(f for f in os.listdir(folder) if f.endswith(".md"))


def test_no_committed_notebook_outputs():
    assert not [f for f in os.listdir(os.path.join(ROOT, "notebooks")) if f.endswith(".ipynb")]


@pytest.mark.parametrize("name", _notebooks())
def test_notebook_has_a_parameters_cell(name):
    nb = jupytext.read(os.path.join(ROOT, "notebooks", name))
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    for p in ("profile", "device", "seed", "data_root"):
        assert re.search(rf"^{p}\s*=", cells[0].source, re.M), p
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_toc_lists_every_notebook_as_an_executed_chapter():
    with open(os.path.join(ROOT, "_toc.yml")) as f:
        toc = f.read()
    for name in _notebooks():
        assert f"book/executed/{name[:-3]}" in toc


def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(ROOT, "README.md")).read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)
