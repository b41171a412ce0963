"""The dry-run engine: capped profiles, rows for cells that run and for cells that fail."""

from poisonlib.dryrun import capped_profile, dry_run, step_counts
from poisonlib.experiments import get_profile
from poisonlib.runner import Cell


def test_capped_profile_caps_outer_loops_only():
    full, cap = get_profile("paper"), capped_profile("paper", 2, attack=3)
    assert cap.name == "paper-dry2-3" and all(c.epochs == 2 for c in cap.train.values())
    assert cap.gc_epochs == 3 and cap.released_epochs == 2
    assert cap.attack_options("tgda", "lr")["epochs"] == 3
    assert cap.attack_options("tgda", "lr")["follower_steps"] == full.attack_options("tgda", "lr")["follower_steps"]  # inner loop kept
    assert step_counts(Cell("gc", "mnist", "cnn", 0.5, eps_d=1.0), "paper") == {"train": 100, "attack": 1000}
    assert step_counts(Cell("attack", "mnist", "lr", 1.0, eps_d=0.1, attack="gm"), "paper") == {"train": 100, "attack": 250}


def test_dry_run_rows(tmp_path):
    rows = dry_run([Cell("target", "mnist", "lr", 1.0), Cell("gc", "cifar10", "resnet18", 0.5, eps_d=0.1)], "smoke", device="cpu",
                   warmup=False)
    ok, bad = rows
    assert ok["status"] == "ok" and ok["seconds_capped"] > 0 and ok["peak_rss_gib"] > 0 and ok["peak_cuda_gib"] is None
    assert ok["extrapolated_seconds"] >= ok["seconds_capped"] and "train" in ok["fit_steps"]
    assert bad["status"] == "error" and "data_root" in bad["reason"] and bad["extrapolated_seconds"] is None
