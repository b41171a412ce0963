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
    defense = Cell("defense", "mnist", "cnn", 0.5, eps_d=1.0)
    assert step_counts(defense, "paper") == {"train": 100, "attack": 1000}
    assert step_counts(defense, "paper", gc_apart=True) == {"train": 100}  # its GC cell priced by its own class


def test_dry_run_rows(tmp_path):
    rows = dry_run([Cell("target", "mnist", "lr", 1.0), Cell("gc", "cifar10", "resnet18", 0.5, eps_d=0.1)], "smoke", device="cpu",
                   warmup=False)
    ok, bad = rows
    assert ok["status"] == "ok" and ok["seconds_capped"] > 0 and ok["peak_rss_gib"] > 0 and ok["peak_cuda_gib"] is None
    assert ok["extrapolated_seconds"] >= ok["seconds_capped"] and "train" in ok["fit_steps"]
    assert bad["status"] == "error" and "data_root" in bad["reason"] and bad["extrapolated_seconds"] is None


def test_paper_cost_prices_each_table_from_its_dry_run_classes_and_counts_the_rest(tmp_path):
    import json

    from poisonlib.grids import get_experiment
    from poisonlib.profiles import get_profile
    from poisonlib.reproduction import cell_key, paper_cost

    cells = [c for c in get_experiment("table1").cells(get_profile("paper")) if c.dataset == "mnist"]
    k0 = cell_key(cells[0])
    k1 = next(cell_key(c) for c in cells if cell_key(c) != k0)

    def row(k, name, status, secs):
        return dict(cost_class=list(map(str, k)), cell=name, status=status, n_poison=None, seconds_capped=1.0,
                    extrapolated_seconds=secs, peak_rss_gib=1.5, reason=None if status == "ok" else "MemoryError: x")

    path = tmp_path / "cost.json"
    path.write_text(json.dumps(dict(classes=[row(k0, "a", "ok", 7200.0), row(k1, "b", "error", None)], not_reached=[])))
    tables, classes, _ = paper_cost(str(path), timings=False)
    t1 = tables.set_index("table").loc["table1"]
    n0 = sum(cell_key(c) == k0 for c in cells)
    assert t1["priced (CPU)"] == n0 < t1["MNIST cells"] and t1["CPU estimate (h)"] == round(2.0 * n0, 1)
    assert t1["failed at real size"] == "b" and t1["peak RSS (GiB)"] == 1.5 and t1["priced (GPU)"] == 0
    # a table none of whose classes ran is priced at nothing, not guessed
    t2 = tables.set_index("table").loc["table2"]
    assert t2["priced (CPU)"] == 0 and t2["CPU estimate (h)"] == 0 and t2["largest cell"] == "–"
    assert list(classes["status"]) == ["ok", "error"]


def test_a_shared_store_builds_dependencies_before_the_clock_and_once(tmp_path):
    """With ``store``, non-target cells find their clean model and target built before timing (once for
    cells that share them); target cells still pay for theirs in a fresh store."""
    import glob
    import os

    store = str(tmp_path / "store")
    cells = [Cell("gc", "mnist", "lr", 1.0, eps_d=0.03), Cell("gc", "mnist", "lr", 1.0, eps_d=0.1), Cell("target", "mnist", "lr", 1.0)]
    seen = []
    rows = dry_run(cells, "smoke", device="cpu", warmup=False, fit=False, store=store,
                   on_row=lambda r: seen.append(len(glob.glob(os.path.join(store, "models", "*.pt")))))
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [r["deps"] for r in rows] == ["built before the clock (shared store)"] * 2 + ["in the timed run"]
    assert seen[0] == seen[1] == seen[2] >= 2  # clean model and target built for the first cell, reused by the second


def test_isolated_dry_runs_turn_a_killed_child_into_a_row_and_go_on(monkeypatch):
    """isolate=True: the cells run in a child process; one killed by the system (here: the child exits
    abruptly, as under the out-of-memory killer's SIGKILL) becomes a ``killed`` row and the next cell runs."""
    import os

    import poisonlib.dryrun as D

    calls = []
    real = D._in_child

    def child_dies_once(fn, *args, **kwargs):
        calls.append(fn.__name__)
        if len(calls) == 1:
            assert real(os._exit, 137) is None  # the child really dies; the pool is replaced
            return None
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(D, "_in_child", child_dies_once)
    cells = [Cell("target", "mnist", "lr", 1.0), Cell("target", "mnist", "lr", 1.0, target="randompc")]
    killed, ok = D.dry_run(cells, "smoke", device="cpu", warmup=False, fit=False, isolate=True)
    assert killed["status"] == "killed" and "out-of-memory" in killed["reason"] and killed["extrapolated_seconds"] is None
    assert ok["status"] == "ok" and ok["seconds_capped"] > 0


def test_in_step_caps_run_few_items_and_add_the_skipped_ones():
    """``inner=1``: the loops inside a step run one item each (listed as ran/total) and the skipped
    items' time is added to the fit; ``inner=None`` runs every step whole and adds nothing."""
    cell = Cell("gc", "mnist", "nn", 0.5, eps_d=0.1)
    capped, whole = (dry_run([cell], "smoke", device="cpu", warmup=False, fit=False, inner=k)[0] for k in (1, None))
    assert capped["status"] == whole["status"] == "ok" and capped["n_poison"] == whole["n_poison"]
    assert capped["inner"] == 1 and capped["seconds_skipped"] > 0
    assert capped["capped_loops"].get("training batches", "").startswith("2/")  # one batch in each training run
    assert whole["capped_loops"] == {} and whole["seconds_skipped"] == 0.0


def test_a_defense_cell_in_a_shared_store_prices_its_defenses_apart_from_its_gc_cell(tmp_path):
    """The GC class keeps its poisons in the shared store; the defense cell at the same eps_d finds them before
    its clock (no GC run inside it: the poisons file is not rewritten), its row names the GC class it leaves to,
    and its step counts are its retraining epochs only."""
    import glob
    import os

    from poisonlib.dryrun import cost_class

    store = str(tmp_path / "store")
    gc, defense = Cell("gc", "mnist", "lr", 1.0, eps_d=0.1), Cell("defense", "mnist", "lr", 1.0, eps_d=0.1)
    stamps = []
    rows = dry_run([gc, defense], "smoke", device="cpu", warmup=False, fit=False, store=store,
                   on_row=lambda r: stamps.append([os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(store, "poisons", "*.pt"))]))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert len(stamps[0]) == 1 and stamps[1] == stamps[0]
    assert rows[1]["gc_class"] == list(map(str, cost_class(gc))) and "priced by gc_class" in rows[1]["deps"]
    assert rows[1]["full_steps"] == {"train": get_profile("smoke").train_config("lr").epochs} and "gc_class" not in rows[0]


def test_a_defense_cells_bill_adds_its_gc_class(tmp_path):
    """Table 10's cells are defense cells: a defense row priced apart from its GC cell adds the GC class's estimate and
    peak; without that GC class's row the cell is not priced (not half priced)."""
    import json

    from poisonlib.dryrun import gc_class
    from poisonlib.grids import get_experiment
    from poisonlib.profiles import get_profile as profile
    from poisonlib.reproduction import cell_key, paper_cost

    cells = [c for c in get_experiment("table10").cells(profile("paper")) if c.dataset == "mnist"]
    d = cells[0]
    n = sum(cell_key(c) == cell_key(d) for c in cells)

    def row(k, status="ok", secs=3600.0, rss=1.0, **kw):
        return dict(cost_class=list(map(str, k)), cell="x", status=status, n_poison=None, seconds_capped=1.0, extrapolated_seconds=secs,
                    peak_rss_gib=rss, reason=None, **kw)

    drow = row(cell_key(d), gc_class=list(map(str, gc_class(d))))
    for classes, hours, peak in (([drow, row(gc_class(d), secs=7200.0, rss=9.0)], 3.0 * n, 9.0), ([drow], 0.0, None)):
        path = tmp_path / "cost.json"
        path.write_text(json.dumps(dict(classes=classes, not_reached=[])))
        t10 = paper_cost(str(path), timings=False)[0].set_index("table").loc["table10"]
        assert t10["CPU estimate (h)"] == round(hours, 1) and t10["priced (CPU)"] == (n if peak else 0)
        assert (t10["peak RSS (GiB)"] == peak) if peak else t10["peak RSS (GiB)"] is None


def test_a_target_class_leaves_its_models_to_the_later_classes(tmp_path):
    """A target cell is timed in a fresh store (its clean model and target are its cost), then its models are copied
    into the shared store: the GC cell after it finds them and builds nothing (same files, untouched)."""
    import glob
    import os

    store = str(tmp_path / "store")
    seen = []
    rows = dry_run([Cell("target", "mnist", "lr", 1.0), Cell("gc", "mnist", "lr", 1.0, eps_d=0.1)], "smoke", device="cpu", warmup=False,
                   fit=False, store=store,
                   on_row=lambda r: seen.append({f: os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(store, "models", "*.pt"))}))
    assert [r["status"] for r in rows] == ["ok", "ok"] and [r["deps"] for r in rows][0] == "in the timed run"
    assert len(seen[0]) >= 2 and seen[1] == seen[0]
