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


def test_gpu_workflow_parses_and_runs_the_documented_paper_commands():
    import yaml

    readme = open(os.path.join(ROOT, "README.md")).read()
    with open(os.path.join(ROOT, ".github", "workflows", "gpu-paper.yml")) as f:
        wf = yaml.safe_load(f)
    job = wf["jobs"]["paper"]
    assert "gpu" in job["runs-on"] and "self-hosted" in job["runs-on"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    documented = "poisonlib book --profile paper --device cuda --data-root"
    assert documented in readme
    assert any(documented in r for r in runs) and any("--nbval-lax" in r and "book/executed" in r for r in runs)
    assert any("tests/test_gpu.py" in r for r in runs) and "tests/test_gpu.py" in readme
    assert "make install" in runs and any(s.get("uses", "").startswith("actions/upload-artifact") for s in job["steps"])


def test_citation_metadata_and_footer_carry_the_package_version():
    import yaml

    import poisonlib

    with open(os.path.join(ROOT, "CITATION.cff")) as f:
        cff = yaml.safe_load(f)
    assert cff["cff-version"] == "1.2.0" and cff["version"] == poisonlib.__version__
    pref = cff["preferred-citation"]
    assert pref["title"].startswith("Exploring the Limits") and [a["family-names"] for a in pref["authors"]] == ["Lu", "Kamath", "Yu"]
    with open(os.path.join(ROOT, "_config.yml")) as f:
        cfg = yaml.safe_load(f)
    assert f"poisonlib {poisonlib.__version__}" in cfg["html"]["extra_footer"]
    assert cfg["launch_buttons"]["binderhub_url"] and cfg["execute"]["execute_notebooks"] == "off"
