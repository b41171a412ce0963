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

