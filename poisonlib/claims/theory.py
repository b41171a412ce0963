"""Claims 1-7: the theory of Sec. 3-4 and App. A-B (Thm. 1, Ex. 1, Fig. 5, Cor. 2, Thm. 3, Thm. 4, Figs. 3 / 7).

Cor. 2 (claim 4) is judged where the paper's threshold is exact -- binary margin classifiers:
OR and Gaussian-10 (``sweeps``) and MNIST-17 LR (the ``transition`` sweep) -- by the empirical
ε*/τ of each (target, seed) lying in :data:`BAND` = [1, 1.5]. For c > 2 classes τ(c) =
⟨W, G(μ)⟩ / W((c−1)/e) (Eq. 29) is only necessary (the trace of (25)), so the 10-class MNIST
cells test claim 5's "nothing below τ(c) reaches the target", not a transition at τ(2).
"""

from __future__ import annotations

from ..rows import TOLERANCE
from ._core import BAND, REACH_RTOL, RESIDUAL_RTOL, claim, mean_sd, part

_LINEAR_CAVEAT = "finite instances checked by construction: a check, not a proof; protocol-independent (no data)"


def _checks(ev, ref: str, pred=lambda c: True):
    return [c for c in (ev.checks or []) if ref in c.reference and pred(c)]


def _check_part(name, cs, what):
    if not cs:
        return part(name, None, f"the by-construction checks ({what}) were not given")
    bad = [c.name for c in cs if not c.passed]
    worst = max(abs(c.measured - c.expected) for c in cs)
    return part(name, not bad, f"{len(cs) - len(bad)} of {len(cs)} checks pass ({what}); largest |measured − expected| {worst:.2g}"
                + (f"; failed: {', '.join(bad)}" if bad else ""))


@claim(1, "Sec. 3, Thm. 1", "w is λ-poisonable iff 0 ∈ G^λ = (1−λ) g(μ) + λ {g(ν)} (convex loss)",
       tests="checks.phase_transition (3 random logistic instances, ε_d/τ ∈ {0.5, 0.9, 1, 1.5}), checks.least_squares",
       criterion="every check passes. If: at ε_d ≥ τ Thm. 2's two-point ν gives ‖(1−λ)g(μ)+λg(ν)‖ ≤ 1e-10, so w minimises the convex "
                 "mixed loss; least squares on clean ∪ poisons (lstsq) returns w within 1e-8. Only if: at ε_d < τ, "
                 "⟨w, g(χ)⟩ ≥ (1−λ)⟨w,g(μ)⟩ − λW(1/e) > 0 for 2,000 random ν and the construction's points, so 0 ∉ G^λ",
       caveat=_LINEAR_CAVEAT)
def _thm1(ev):
    return [_check_part("if", _checks(ev, "Cor. 2, Thm. 2") + _checks(ev, "Ex. 1"), "0 ∈ G^λ ⇒ w is the retrained model"),
            _check_part("only if", _checks(ev, "Cor. 2, Eq. 20"), "below τ: 0 ∉ G^λ for every ν")]


@claim(2, "Ex. 1, Fig. 5", "least-squares regression is poisonable at any ε_d > 0, and GC reaches the target for every ε_d",
       tests="checks.least_squares (ε_d ∈ {0.01, 0.1, 1}); the Fig. 5 GC sweep (sweeps['fig5'])",
       criterion=f"construction: the checks pass (lstsq on clean ∪ poisons returns w within 1e-8); GC: at every ε_d of the sweep the "
                 f"model retrained to optimality is within {REACH_RTOL:g}·‖w‖ of the target",
       caveat="1-D synthetic regression (the theory chapter's data)")
def _ex1(ev):
    sw = ev.sweeps.get("fig5")
    if sw is None:
        gc = part("GC", None, "the Fig. 5 GC sweep on least squares (sweeps.eps_sweep, model linreg) passed as sweeps={'fig5': ...}")
    else:
        rel = [r["param_distance"] / sw["w_norm"] for r in sw["rows"]]
        gc = part("GC", all(v <= REACH_RTOL for v in rel),
                  f"‖w_refit − w‖/‖w‖ at ε_d = {', '.join(format(r['eps_d'], 'g') for r in sw['rows'])}: {', '.join(format(v, '.2g') for v in rel)}")
    return [_check_part("construction", _checks(ev, "Ex. 1"), "least squares reaches w exactly"), gc]


@claim(3, "Fig. 5", "as ε_d grows, the poisons move toward the data distribution",
       tests="the Fig. 5 GC sweep (sweeps['fig5'], with the poisons kept)",
       criterion="the mean distance of the poisons (x, y) to the centroid of the clean data does not increase from one ε_d of the "
                 "sweep to the next, and is smaller at the largest ε_d than at the smallest",
       caveat="1-D synthetic regression; one seed")
def _fig5(ev):
    import numpy as np

    sw = ev.sweeps.get("fig5")
    if sw is None or not all("x" in r for r in sw.get("rows", [])) or "data" not in sw:
        return [part("poisons → data", None, "the Fig. 5 sweep run with keep_poisons=True and its clean data, sweeps={'fig5': {'rows', "
                                              "'data': (x, y)}}")]
    x0, y0 = (np.asarray(a, dtype=float) for a in sw["data"])
    c = np.r_[x0.reshape(len(x0), -1).mean(0), y0.mean()]
    d = [float(np.linalg.norm(np.c_[np.asarray(r["x"]).reshape(len(r["x"]), -1), np.asarray(r["y"])] - c, axis=1).mean())
         for r in sorted(sw["rows"], key=lambda r: r["eps_d"])]
    ok = all(b <= a * (1 + 1e-9) for a, b in zip(d, d[1:])) and d[-1] < d[0]
    return [part("poisons → data", ok, "mean distance to the clean centroid by ε_d: " + ", ".join(f"{v:.3g}" for v in d))]


def _ratio_points(rows, tau, w_norm):
    """(ε_d/τ, reaches) of an eps_sweep: reaching = the refit within REACH_RTOL of the target."""
    return [(r["eps_d"] / tau, r["param_distance"] / w_norm <= REACH_RTOL) for r in rows]


def _transition_part(name, series):
    """One binary set: ``series`` = [(label, [(ε_d/τ, reaches), ...])] per (target, seed)."""
    below = sum(ok for _, pts in series for x, ok in pts if x < BAND[0])
    stars = []
    for _, pts in series:
        star = None
        for x, ok in sorted(pts, reverse=True):
            if not ok:
                break
            star = x
        stars.append(star)
    ok = below == 0 and all(s is not None and s <= BAND[1] for s in stars)
    shown = ", ".join("above the grid" if s is None else f"{s:.3g}" for s in stars)
    return part(name, ok, f"ε*/τ per (target, seed): {shown}; points below τ that reach the target: {below}")


def _mnist17(tr):
    if tr is None:
        return part("MNIST-17", None, "the MNIST-17 sweep of ε_d/τ (poisonlib.transition.run) passed as transition=")
    rows = tr.get("rows") if isinstance(tr, dict) else None
    if rows:
        gc = [r for r in rows if r.get("method", "GC") == "GC"]
        keys = sorted({(r["target"], r["seed"]) for r in gc})
        series = [(f"{t}/{s}", [(r["eps_ratio"], bool(r["reaches"])) for r in gc if (r["target"], r["seed"]) == (t, s)]) for t, s in keys]
        p = _transition_part("MNIST-17 (GC)", series)
        summ = [s for s in tr.get("summary", []) if s.get("method", "GC") == "GC"]
        built = [r for r in rows if r.get("method") == "construction"]
    else:  # summary rows only: ε*/τ per seed (points below τ that reach are then seen only as ε* < 1)
        summ = tr["summary"] if isinstance(tr, dict) else tr
        stars = [v for s in summ for v in s["eps_star_over_tau"]]
        ok = all(v is not None and BAND[0] <= v <= BAND[1] for v in stars)
        p, built = part("MNIST-17 (GC)", ok, "ε*/τ per (target, seed): " + ", ".join("above the grid" if v is None else f"{v:.3g}" for v in stars)), []
    per = "; ".join(f"{s['target']}: τ {s['tau']:.3g}, ε*/τ {s['mean']:.3g} ± {s['std']:.2g} over seeds {s['seeds']}"
                    if s.get("mean") is not None else
                    f"{s['target']}: no seed reached the target on the grid (residual {s.get('residual_at_top') or float('nan'):.2g} of ‖g(μ)‖ "
                    f"at the largest ε_d, {100 * (s.get('dead_frac_at_top') or 0):.0f} % of the poisons dead)" for s in summ)
    if built:  # the proof's poisons, judged by the same criterion: shown, not part of GC's verdict
        above = [r for r in built if r["eps_ratio"] >= 1]
        per += (f"; the construction (n_p copies of one point): reaches the target at {sum(r['reaches'] for r in above)} of {len(above)} "
                f"points with ε_d ≥ τ (residual ≤ {max((r['residual_rel'] for r in above if r['residual_rel'] is not None), default=float('nan')):.1g}, "
                f"refit within {max((r['refit_rel'] for r in above if r['refit_rel'] is not None), default=float('nan')):.2g}·‖w‖), "
                f"and does not exist below τ")
    return part(p.name, {"holds": True, "fails": False}[p.status], p.text + (f" ({per})" if per else ""))


@claim(4, "Cor. 2, Figs. 1-2", "binary margin classifiers: the target is reachable iff ε_d ≥ τ — a phase transition at τ "
       "(OR, Gaussian-10, MNIST-17)",
       tests="sweeps.eps_sweep on OR and Gaussian-10 (sweeps['or'], sweeps['gaussian10']); transition.run on MNIST-17 LR (GradPC and "
             "label-flip targets, ε_d/τ from 0.25 to 3, several seeds)",
       criterion=f"per binary set: no grid point with ε_d < τ reaches the target (refit within {REACH_RTOL:g}·‖w‖, MNIST-17 also "
                 f"residual ≤ {RESIDUAL_RTOL:g}·‖g(μ)‖), and every (target, seed)'s empirical threshold ε* (smallest grid ε_d from "
                 f"which all larger reach) has ε*/τ in [{BAND[0]:g}, {BAND[1]:g}]",
       caveat="GC runs a finite number of steps and the ε_d grid is coarse (ε* is a grid point); MNIST-17 poisons are unbounded "
              "(Cor. 2's 𝕏 = ℝ^d); OR / Gaussian-10 are one seed each")
def _cor2(ev):
    out = []
    for key, name in (("or", "OR"), ("gaussian10", "Gaussian-10")):
        sw = ev.sweeps.get(key)
        out.append(part(name, None, f"the {name} ε_d sweep passed as sweeps={{'{key}': {{'tau', 'w_norm', 'rows'}}}}") if sw is None
                   else _transition_part(name, [(name, _ratio_points(sw["rows"], sw["tau"], sw["w_norm"]))]))
    out.append(_mnist17(ev.transition))
    return out


def _gc_rows(ev, models, grids=("table2", "table8", "fig7", "fig3")):
    return [r for g in grids for r in ev.grid(g) if r.get("kind") == "gc" and r.get("model") in models and r.get("tauc") is not None
            and r.get("defense") is None]


def _below_tau_c(ev, name, models, need):
    """Nothing below τ(c) reaches the target: no GC cell with ε_d < τ(c) has both ‖g(χ)‖ ≤ RESIDUAL_RTOL·‖g(μ)‖ and
    its drop within TOLERANCE of the target's."""
    rs = [r for r in _gc_rows(ev, models) if r["eps_d_used"] < r["tauc"]]
    if not rs:
        return part(name, None, need)
    rel = [r["grad_mixed"] / r["grad_clean"] for r in rs if r.get("grad_clean")]
    reach = [r for r in rs if r.get("grad_clean") and r["grad_mixed"] <= RESIDUAL_RTOL * r["grad_clean"]
             and r.get("target_drop") is not None and abs(r["drop"] - r["target_drop"]) <= TOLERANCE]
    share = [r["drop"] / r["target_drop"] for r in rs if r.get("target_drop")]
    return part(name, not reach, f"{len(rs)} GC cells with ε_d < τ(c) ({', '.join(sorted({r['model'].upper() for r in rs}))}): "
                f"‖g(χ)‖/‖g(μ)‖ {mean_sd(rel)} (min {min(rel, default=float('nan')):.3g}); share of the target's drop reached "
                f"{mean_sd(share)}; cells that reach the target: {len(reach)}")


@claim(5, "Thm. 3, Ex. 3, Eq. 29", "multiclass cross-entropy: below the necessary threshold τ(c) = ⟨W, G(μ)⟩/W((c−1)/e) no poisoning "
       "reaches the target; the empirical threshold lies above it, nearer τ(2)",
       tests="GC cells of Tables 2 / 8 and Figs. 3 / 7 on 10-class MNIST LR (ε_d < τ(c)); the share of the target's drop per ε_d/τ(2)",
       criterion=f"no GC cell with ε_d < τ(c) reaches the target: ‖g(χ)‖ ≤ {RESIDUAL_RTOL:g}·‖g(μ)‖ together with a drop within "
                 f"{TOLERANCE:g} points of the target's would contradict Eq. 29. Where the empirical threshold lies (τ(c) < ε* ≲ τ(2), "
                 "Sec. 5.2) is shown, not judged: for c > 2 the theorem gives no sufficient threshold",
       caveat="the trace condition is necessary only; ‖W‖ is not in the records, so the floor W((c−1)/e)(τ(c)−ε_d)/‖W‖ is not computed",
       universal=True)
def _thm3(ev):
    p = _below_tau_c(ev, "LR below τ(c)", ("lr",), "GC cells of 10-class MNIST LR with ε_d < τ(c) (grids table2 / table8 / fig7)")
    rs = [r for r in _gc_rows(ev, ("lr",)) if r.get("target_drop")]
    if rs:
        by = sorted((round(r["eps_d_used"] / r["tau2"], 3), r["drop"] / r["target_drop"]) for r in rs if r.get("tau2"))
        shown = ", ".join(f"{x:g}: {s:.2f}" for x, s in dict(by).items())
        p = part(p.name, {"holds": True, "fails": False, "untestable": None}[p.status], p.text + f"; share by ε_d/τ(2): {shown}")
    return [p]


@claim(6, "Thm. 4, App. A", "the last-layer threshold applies to networks (necessary): NN, CNN; ResNets at the paper profile",
       tests="GC cells of Tables 2 / 8 and Figs. 3 / 7 for NN and CNN (τ of the last layer); ResNet-18 / -34 rows of Table 2",
       criterion=f"per architecture, no GC cell with ε_d below the last layer's τ(c) reaches the target (‖g(χ)‖ ≤ {RESIDUAL_RTOL:g}·‖g(μ)‖ "
                 f"and a drop within {TOLERANCE:g} points of the target's)",
       caveat="GC's ‖g(χ)‖ is over the parameters GC matches (all, or the first tensor under 'released'); ResNets need --data-root")
def _thm4(ev):
    return [_below_tau_c(ev, m.upper(), (m,), f"{m.upper()} GC cells with ε_d < τ(c) (grids table2 / fig7)") for m in ("nn", "cnn")] + [
        _below_tau_c(ev, "ResNets", ("resnet18", "resnet34"), "CIFAR-10 / TinyImageNet ResNet cells: the paper profile with --data-root")]


def _spearman(a, b) -> float:
    import numpy as np
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(a, float), np.asarray(b, float)).statistic)


@claim(7, "Sec. 5.2, Figs. 3 / 7", "with ε_d fixed, GC's ‖g(χ)‖ plateaus higher the further τ is above ε_d",
       tests="Fig. 3 grid (ε_d = 1, several ε_w per model: several τ); Fig. 7 grid (one target, several ε_d)",
       criterion="per model with ≥ 3 cells where τ(2) > ε_d: Spearman correlation of the final ‖g(χ)‖ with τ(2) − ε_d ≥ 0.8 (Fig. 3, "
                 "across targets; Fig. 7, across ε_d of one target)",
       caveat="one seed per cell; the profile's GC epochs")
def _plateau(ev):
    out = []
    for grid in ("fig3", "fig7"):
        res, shown = [], []
        for m in dict.fromkeys(r["model"] for r in _gc_rows(ev, ("lr", "nn", "cnn"), (grid,))):
            rs = [r for r in _gc_rows(ev, (m,), (grid,)) if r["tau2"] > r["eps_d_used"]]
            if len(rs) >= 3:
                rho = _spearman([r["tau2"] - r["eps_d_used"] for r in rs], [r["grad_mixed"] for r in rs])
                res.append(rho >= 0.8)
                shown.append(f"{m.upper()} ρ = {rho:.2f} over {len(rs)} cells")
        out.append(part(grid, all(res) if res else None,
                        "; ".join(shown) if res else f"≥ 3 {grid} cells of one model with τ(2) > ε_d (poisonlib run {grid})"))
    return out
