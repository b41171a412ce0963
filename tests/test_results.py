import json
import os

import pytest

from poisonlib.results import atomic_write_json, cached_run, config_hash, load_result, result_path


def test_cache_miss_then_hit_then_miss_on_config_change(tmp_path):
    calls = []

    def compute(v):
        def f():
            calls.append(v)
            return {"value": v}

        return f

    cfg = {"dataset": "mnist", "seed": 0, "eps_d": 0.1}
    r1 = cached_run("demo", cfg, compute(1), results_dir=str(tmp_path))
    r2 = cached_run("demo", dict(reversed(list(cfg.items()))), compute(2), results_dir=str(tmp_path))  # key order ignored
    assert calls == [1] and not r1["cached"] and r2["cached"] and r2["metrics"] == {"value": 1}
    r3 = cached_run("demo", {**cfg, "eps_d": 1.0}, compute(3), results_dir=str(tmp_path))
    assert calls == [1, 3] and not r3["cached"]
    r4 = cached_run("demo", cfg, compute(4), results_dir=str(tmp_path), force=True)
    assert calls == [1, 3, 4] and r4["metrics"] == {"value": 4}
    assert load_result("demo", cfg, str(tmp_path))["metrics"] == {"value": 4}


def test_record_has_provenance(tmp_path):
    rec = cached_run("demo", {"seed": 5}, lambda: {"acc": 0.5}, results_dir=str(tmp_path), device="cpu")
    path = result_path("demo", {"seed": 5}, str(tmp_path))
    assert os.path.basename(path) == config_hash({"seed": 5}) + ".json"
    with open(path) as f:
        on_disk = json.load(f)
    for key in ("config", "seed", "metrics", "environment", "git_commit", "wall_time_s", "created", "config_hash"):
        assert key in on_disk
    assert on_disk["seed"] == 5 and on_disk["environment"]["device"] == "cpu"
    assert {"torch", "numpy", "python", "poisonlib"} <= set(on_disk["environment"])
    assert rec["cached"] is False


def test_failed_run_writes_nothing(tmp_path):
    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cached_run("demo", {"seed": 1}, broken, results_dir=str(tmp_path))
    assert not any(files for _, _, files in os.walk(tmp_path))


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    p = tmp_path / "a" / "b.json"
    atomic_write_json({"x": 1}, str(p))
    atomic_write_json({"x": 2}, str(p))
    assert json.loads(p.read_text()) == {"x": 2}
    assert os.listdir(p.parent) == ["b.json"]


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json({"x": 1}, str(tmp_path / "r.json"))
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("r.json") == mode("plain.json") == 0o644


def test_hardware_names_the_gpu_else_the_cpu():
    from poisonlib.results import environment, hardware

    env = environment("cpu")
    assert hardware(env) == env["cpu"] and "cores" in env["cpu"]
    assert hardware({**env, "gpu": "NVIDIA H200"}) == "NVIDIA H200"
    assert hardware({"platform": "Linux"}) == "Linux"  # records written before the cpu field
