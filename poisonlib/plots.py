"""Small matplotlib helpers shared by the book's figures."""

from __future__ import annotations


def mark_tau(ax, tau: float, label: str = "τ", **kw) -> None:
    """A vertical dashed line at ε_d = τ."""
    ax.axvline(tau, color=kw.pop("color", "k"), ls="--", lw=1, label=f"{label} = {tau:.3g}", **kw)


def transition_plot(ax, rows: dict, key: str, tau: float, *, ylabel: str, logy: bool = False, tau_label: str = "τ(2)"):
    """Plot ``row[key]`` against ε_d for each labelled list of sweep rows, with τ marked."""
    for label, rs in rows.items():
        ax.plot([r["eps_d"] for r in rs], [r[key] for r in rs], "o-", ms=3, label=label)
    mark_tau(ax, tau, tau_label)
    ax.set(xlabel="ε_d", ylabel=ylabel)
    if logy:
        ax.set_yscale("symlog", linthresh=1e-6)
        ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return ax



def learning_curves(ax, rows: list[dict], label, *, taus: dict | None = None, title: str = ""):
    """‖g(χ)‖ per GC epoch (Fig. 3, 7) of each run row: residual / (1 + ε_d).

    ``label(row)`` names a curve. The final value is marked with a dot, so that a
    plateau is visible as a flat tail ending in a dot well above zero.
    """
    for r in rows:
        curve = [v / (1 + r["eps_d_used"]) for v in r["gc_residual_curve"]]
        (line,) = ax.semilogy(curve, label=label(r))
        ax.plot(len(curve) - 1, r["grad_mixed"], "o", color=line.get_color(), ms=4)
    ax.set(xlabel="GC epoch", ylabel="‖g(χ)‖", title=title)
    ax.legend(fontsize=7)
    return ax


def poison_grid(examples: dict, *, n: int = 8, title: str = ""):
    """Fig. 8 / 9: clean starting points (row 1), GC poisons (row 2), perturbation (row 3)."""
    import matplotlib.pyplot as plt
    import numpy as np

    shape = examples["shape"]
    clean = np.asarray(examples["clean"], dtype=float)[:n].reshape(-1, *shape)
    poison = np.asarray(examples["poison"], dtype=float)[:n].reshape(-1, *shape)
    k = len(clean)
    fig, axes = plt.subplots(3, k, figsize=(1.3 * k, 4.2), squeeze=False)
    delta = poison - clean
    span = float(np.abs(delta).max()) or 1.0
    for j in range(k):
        for i, (img, kw) in enumerate(((clean[j], {}), (poison[j], {}), (delta[j], {"cmap": "seismic", "vmin": -span, "vmax": span}))):
            a = img.transpose(1, 2, 0) if img.shape[0] == 3 else img[0]
            if img.shape[0] == 3 and i < 2:
                a = np.clip(a, 0, 1)
            elif img.shape[0] == 3:
                a = 0.5 + 0.5 * a.mean(axis=2) / span  # perturbation of a colour image, as grey levels around 0.5
                kw = {"cmap": "seismic", "vmin": 0, "vmax": 1}
            axes[i, j].imshow(a, **({"cmap": "gray", "vmin": 0, "vmax": 1} if i < 2 and img.shape[0] == 1 else kw))
            axes[i, j].axis("off")
        axes[0, j].set_title(f"y = {examples['label'][j]}", fontsize=8)
    for i, name in enumerate(("clean", "poisoned", f"perturbation (±{span:.2f})")):
        axes[i, 0].text(-0.15, 0.5, name, transform=axes[i, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def regression_panels(ds, rows: list[dict], target, *, title: str = "", zoom=((-15, 15), (-15, 25))):
    """Figs. 5 and 6: per ε_d (columns) the clean points, the poisons, the target line and
    the refit line; top row on a common scale (``zoom``), bottom row on each panel's own."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, len(rows), figsize=(3.2 * len(rows), 6.2), squeeze=False)
    xs = np.linspace(-3, 3, 2)
    w_t, b_t = float(target.weight.detach()), float(target.bias.detach())
    for j, r in enumerate(rows):
        w_r, b_r = float(r["retrained"].weight.detach()), float(r["retrained"].bias.detach())
        for i, ax in enumerate(axes[:, j]):
            ax.scatter(ds.x_train[:, 0], ds.y_train, s=4, c="tab:blue", label="clean")
            ax.scatter(r["x"][:, 0], r["y"], s=8, c="tab:red", label="poisons")
            ax.plot(xs, w_t * xs + b_t, "k--", lw=1, label="target")
            ax.plot(xs, w_r * xs + b_r, "g-", lw=1, label="refit")
            if i == 0:
                ax.set(xlim=zoom[0], ylim=zoom[1], title=f"ε_d = {r['eps_d']:g}")
        axes[0, j].set_xlabel("same scale")
        axes[1, j].set_xlabel("own scale")
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def profile_label(profile) -> str:
    """``"profile: cpu · poisonlib 0.1.0"``: what every figure and table of the book is marked with."""
    from . import __version__

    return f"profile: {getattr(profile, 'name', profile)} · poisonlib {__version__}"


def stamp(fig, label: str):
    """Write ``label`` small in the lower-right corner of ``fig`` (once)."""
    if getattr(fig, "_poisonlib_label", None) != label:
        fig.text(0.998, 0.002, label, ha="right", va="bottom", fontsize=7, color="0.35")
        fig._poisonlib_label = label
    return fig


def label_outputs(profile) -> None:
    """Mark every figure and table a notebook displays from now on with the profile that made it.

    Figures get :func:`stamp`; pandas tables (DataFrames and Stylers) a caption line under
    them. Both hook into IPython's display formatters, so ``plt.show()``, a cell's last
    figure and ``display(df)`` are all covered. Outside IPython this does nothing.
    """
    label = profile_label(profile)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    import matplotlib
    import matplotlib.pyplot as plt

    # load the backend now: the inline backend (re)registers its figure formatters when it is
    # loaded, which pyplot otherwise does lazily at the first figure, after our wrapping
    plt.switch_backend(matplotlib.get_backend())
    import pandas as pd
    from matplotlib.figure import Figure
    from pandas.io.formats.style import Styler

    caption = f'<p class="poisonlib-profile" style="font-size:0.8em;color:#555;margin-top:0.2em">{label}</p>'

    def with_caption(html):
        return None if html is None else html + caption

    for mime, fmt in ip.display_formatter.formatters.items():
        if _has(fmt, Figure):
            original = getattr(fmt, "_poisonlib_original", None) or fmt.lookup_by_type(Figure)
            fmt._poisonlib_original = original
            fmt.for_type(Figure, lambda fig, _f=original: _f(stamp(fig, label)))
        if mime == "text/html":
            fmt.for_type(pd.DataFrame, lambda df: with_caption(df._repr_html_()))
            fmt.for_type(Styler, lambda s: with_caption(s._repr_html_()))


def _has(fmt, cls) -> bool:
    try:
        fmt.lookup_by_type(cls)
        return True
    except KeyError:
        return False
