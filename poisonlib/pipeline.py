"""One pipeline for every cell: clean model -> target -> poisons -> retraining -> metrics.

A :class:`CellSpec` is one resolved cell: the grid's :class:`~poisonlib.cells.Cell`, the
:class:`~poisonlib.profiles.Profile` and :class:`~poisonlib.protocols.Protocol` objects, the
data root and a concrete device -- each resolved once, when the spec is built
(:meth:`poisonlib.cells.Cell.resolve`), and passed down whole. Below it nothing looks a
profile, protocol or device up by name again.

* :func:`poison` runs any registered attack (:mod:`poisonlib.attacks.registry`; GC and every
  baseline alike) against the cell's clean model or target, retrains a fresh model on
  clean ∪ poisons and measures it (:mod:`poisonlib.evaluation`);
* :meth:`CellSpec.run` loads the cell's record from the results store or computes it:
  target cells (:func:`target_metrics`), attack cells (:func:`poison`) and GC + defenses
  (:func:`poisonlib.defended.defense_metrics`); its key is :func:`poisonlib.keys.record_config`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch

from . import data as data_mod
from ._validation import PoisonlibError, check_poison_memory, check_positive
from .attacks.registry import AttackContext, get_attack
from .evaluation import _steps, compare_to_target, reference_accuracy, retrain
from .grads import mixed_gradient_norm
from .keys import from_user_files, record_config
from .protocols import Protocol, finite_poisons
from .results import atomic_torch_save, cached_run, config_hash, default_results_dir, is_failed, load_result, remove_with_partials, result_path
from .targets import clean_and_target


@dataclass(frozen=True)
class CellSpec:
    """One resolved cell, what an executor ships to a worker: the cell (ε_d a number or
    ``"tau"``, which resolves against its target's τ(2); never ``"mt"``), the profile and
    protocol objects, the data root and the device it runs on (``"cpu"``, ``"cuda"``; never
    ``"auto"``). ``gc_epochs``, ``eps_w_norm`` and ``options`` (the attack's options over the
    profile's) are the library calls' extra knobs; grids leave them at their defaults.

    Its record lives at ``results/<experiment>/<key>.json``: :attr:`config` is exactly what
    the record is keyed by (its ``config`` entry) and :attr:`key` its hash (``config_hash``)."""

    cell: object  # poisonlib.cells.Cell
    profile: object  # poisonlib.profiles.Profile
    protocol: Protocol
    data_root: str | None = None
    device: str = "cpu"
    gc_epochs: int | None = None
    eps_w_norm: str = "absolute"
    options: tuple = field(default=())  # (name, value) pairs over the profile's options for the attack

    @property
    def experiment(self) -> str:
        """The store folder of its record: ``target``, ``gc``, ``defense`` or the attack's name."""
        return self.cell.attack if self.cell.kind == "attack" else self.cell.kind

    @property
    def attack(self):
        """The registered attack this cell runs (GC for ``gc`` and ``defense`` cells)."""
        return get_attack("gc" if self.cell.kind in ("gc", "defense") else self.cell.attack)

    @property
    def config(self) -> dict:
        """What its record is keyed by (``record["config"]``)."""
        c = self.cell
        overrides = dict(self.options) or None
        return record_config(c.kind, dataset=c.dataset, model=c.model, eps_w=c.eps_w, profile=self.profile, protocol=self.protocol,
                             device=self.device, data_root=self.data_root, seed=c.seed, target=c.target, eps_d=c.eps_d, scale=c.scale,
                             noise=c.noise, eps_w_norm=self.eps_w_norm, gc_epochs=self.gc_epochs,
                             gc_options=dict(c.gc_options) if c.kind == "gc" else None, attack=c.attack, attack_options=overrides,
                             clip=c.clip, data_fingerprint=self.data_fingerprint if from_user_files(c.dataset, self.data_root) else None)

    @property
    def data_fingerprint(self) -> str:
        """The content fingerprint of the cell's data as its protocol sees it (memoised per process)."""
        return _fingerprint(self.cell.dataset, self.profile, self.data_root, self.protocol)

    @property
    def key(self) -> str:
        """Its record's ``config_hash``."""
        return config_hash(self.config)

    def path(self, results_dir: str | None = None) -> str:
        """Where its record lives in the store ``results_dir``."""
        return result_path(self.experiment, self.config, results_dir)

    def load_data(self):
        """The cell's dataset at its profile, seen through its protocol."""
        return load_for_profile(self.cell.dataset, self.profile, self.data_root, self.protocol)

    def run(self, *, results_dir=None, force: bool = False, progress=None, keep_poisons: bool = False) -> dict:
        """Load its record from the store ``results_dir``, or compute and store it.

        A GC cell checkpoints to ``results/checkpoints/gc-<key>.pt`` (an interrupted cell resumes
        there; the file goes once the record is written); ``keep_poisons`` also saves its poisons
        and retrained model to ``results/poisons/gc-<key>.pt`` (the record's ``poisons`` entry)."""
        from .defended import defense_metrics

        config, kind = self.config, self.cell.kind
        root = results_dir or default_results_dir()
        ckpt = os.path.join(root, "checkpoints", f"gc-{config_hash(config)}.pt") if kind == "gc" else None
        poisons = os.path.join(root, "poisons", f"gc-{config_hash(config)}.pt")
        if ckpt and force:
            remove_with_partials(ckpt)

        def compute():
            if kind == "target":
                return target_metrics(self, results_dir=results_dir, progress=progress)
            if kind == "defense":
                return defense_metrics(self, results_dir=results_dir, progress=progress)
            metrics, res, _, _ = poison(self, results_dir=results_dir, progress=progress, checkpoint=ckpt)
            if keep_poisons:
                atomic_torch_save({"x": res.x.cpu(), "y": res.y.cpu(), "init_index": res.init_index.cpu(), "config": config,
                                   "retrained": res.retrained.state_dict()}, poisons)
            return metrics

        if keep_poisons and not force and not os.path.exists(poisons):
            # poisons asked for but not on disk: recompute, unless the stored record is a failure (it has none, and a
            # deterministic failure would only fail again, at full cost, in every chapter that asks)
            force = not is_failed(load_result(self.experiment, config, results_dir))
        rec = cached_run(self.experiment, config, compute, results_dir=results_dir, force=force, device=self.device)
        if keep_poisons:
            rec["poisons"] = poisons
        if ckpt:
            remove_with_partials(ckpt)  # the record is written: an interrupted run no longer needs its checkpoint
        return rec


_FINGERPRINTS: dict = {}


def _fingerprint(dataset: str, prof, data_root: str | None, proto: Protocol) -> str:
    """The fingerprint of ``dataset`` as ``prof`` loads it and ``proto`` sees it, memoised per
    (dataset, size, data root, protocol view) and re-read when a source file changes."""
    memo = (dataset, prof.n_train, data_root, json.dumps(proto.key(), sort_keys=True), _mtimes(dataset, data_root))
    if memo not in _FINGERPRINTS:
        _FINGERPRINTS[memo] = load_for_profile(dataset, prof, data_root, proto).fingerprint
    return _FINGERPRINTS[memo]


def _mtimes(dataset: str, data_root: str | None) -> tuple:
    """(path, size, mtime) of the data's files, so that a file changed under the same path is fingerprinted again."""
    top = dataset if data_root is None else data_root
    if os.path.isfile(top):
        st = os.stat(top)
        return ((top, st.st_size, st.st_mtime_ns),)
    out = []
    for folder, _, names in os.walk(top):
        for n in sorted(names):
            st = os.stat(os.path.join(folder, n))
            out.append((os.path.join(folder, n), st.st_size, st.st_mtime_ns))
        if len(out) > 64:  # a folder of many images (TinyImageNet): its files' digest is the loader's fast path
            break
    return tuple(out)


def load_for_profile(dataset: str, prof, data_root: str | None, proto: Protocol):
    """Load ``dataset`` as the profile asks (subset for smoke; full data for paper), seen
    through ``proto`` (normalised inputs and the NN architecture of the released code)."""
    if data_root is None and dataset in ("cifar10", "tinyimagenet"):
        raise PoisonlibError(f"dataset {dataset!r} has no embedded copy: pass data_root (--data-root) with it under it (profile {prof.name!r})")
    if prof.needs_data_root and data_root is None and dataset in ("mnist", "mnist17"):
        raise PoisonlibError(f"profile {prof.name!r} uses the full {dataset} dataset: pass data_root (--data-root) with MNIST under it")
    return proto.prepare(data_mod.load_dataset(dataset, data_root=data_root, n_train=prof.n_train))


def _target(spec: CellSpec, ds, *, results_dir, progress):
    c = spec.cell
    return clean_and_target(ds, c.model, c.eps_w, spec.profile, target=c.target, eps_w_norm=spec.eps_w_norm, noise=c.noise, scale=c.scale,
                            target_seed=c.seed if c.kind == "target" else 0, data_root=spec.data_root, device=spec.device,
                            results_dir=results_dir, progress=progress, protocol=spec.protocol)


def target_metrics(spec: CellSpec, *, results_dir=None, progress=None) -> dict:
    """A target cell's metrics (Tables 1, 5): clean and target accuracy, drop, ‖δ‖, τ(2), τ(c).
    Its seed seeds the clean model and the corruption (attack cells use seed 0's target)."""
    _, _, info = _target(spec, spec.load_data(), results_dir=results_dir, progress=progress)
    return dict(info)


def resolve_eps_d(eps_d, info: dict) -> float:
    """ε_d as a number: ``"tau"`` means τ(2) of the target (as in Table 2)."""
    if eps_d == "tau":
        if info["tau2"] <= 0:
            raise PoisonlibError("eps_d='tau' but the target's tau(2) is 0 (every eps_d > 0 suffices); give a number")
        return float(info["tau2"])
    return check_positive("eps_d", eps_d)


def poison(spec: CellSpec, *, results_dir=None, progress=None, checkpoint: str | None = None):
    """One attack cell, uncached: returns ``(metrics, result, target_model, dataset)``.

    The cell's attack (GC for ``gc`` cells) runs against the clean model or the target, as
    its registry entry says, inside the admissible set the protocol and the attack allow;
    a fresh model is retrained on clean ∪ poisons with the protocol's retraining. For MT
    ``eps_d`` is a budget: it stops when the target is reached, and ``eps_d`` in the
    metrics is what it used. ``checkpoint`` (GC only): its state every 100 steps.

    Metrics (accuracies and drops in %, drops = retrained - reference):
    ``clean_acc, target_acc, target_drop, retrained_acc, reference_acc, drop, tau2, tauc,
    eps_d, eps_d_requested, n_poison, n_clean, residual_final`` (‖g(μ)+ε_d g(ν)‖ at the
    target), ``grad_mixed`` (‖g(χ)‖, Eq. 5), ``param_distance``, ``target_agreement``;
    GC adds its residual curve, ``grad_clean``, per-epoch accuracies (``released``) and
    example poisons; the baselines add ``attack_config``."""
    c, prof, proto, dev = spec.cell, spec.profile, spec.protocol, torch.device(spec.device)
    attack = spec.attack
    ds = spec.load_data()
    if not isinstance(c.eps_d, str):  # size the poison set before training anything
        check_poison_memory(check_positive("eps_d", c.eps_d), len(ds.x_train), ds.n_features, dev)
    clean, tgt, info = _target(spec, ds, results_dir=results_dir, progress=progress)
    eps = resolve_eps_d(c.eps_d, info)
    tcfg = prof.retrain_config(c.model, proto, len(ds.x_train))
    overrides = dict(c.gc_options) if c.kind == "gc" else dict(spec.options)
    ctx = AttackContext(ds=ds, model=c.model, eps_d=eps, train_config=tcfg, seed=c.seed, profile=prof, protocol=proto,
                        epochs=prof.gc_epochs_for(c.model) if spec.gc_epochs is None else spec.gc_epochs, checkpoint=checkpoint)
    opts = attack.prepare({**prof.attack_options(attack.name, c.model), **overrides}, ctx)
    res = attack(clean.to(dev), tgt.to(dev), ds, eps, box=attack.poison_box(proto, ds), seed=c.seed, device=dev, progress=progress, **opts)
    finite_poisons(res.x, f"{attack.label} poisons")
    per_epoch_eval = attack.per_epoch_eval and proto.per_epoch_eval
    out = retrain(ds, c.model, res.x, res.y, tcfg, seed=c.seed, device=dev, progress=progress, per_epoch=per_epoch_eval)
    retrained, per_epoch = out if per_epoch_eval else (out, [])
    res.retrained = retrained
    ref = reference_accuracy(ds, c.model, tcfg, proto.clean_config(c.model, prof.train_config(c.model)), info, seed=c.seed, device=dev,
                             results_dir=results_dir)
    cmp = compare_to_target(retrained, tgt.cpu(), ds)
    norms = (mixed_gradient_norm(tgt.to(dev), ds.x_train, ds.y_train, res.x, res.y, ds.task) if len(res.x)
             else {"residual": float("nan"), "mixed": float("nan"), "clean": float("nan")})
    metrics = {**info, "eps_d_requested": c.eps_d if isinstance(c.eps_d, str) else float(c.eps_d), "eps_d": res.eps_d,
               "n_poison": len(res.x), "n_clean": len(ds.x_train), **cmp, "reference_acc": ref, "drop": cmp["retrained_acc"] - ref,
               "residual_final": norms["residual"], "grad_mixed": norms["mixed"], "protocol": proto.name}
    if len(res.x):
        metrics["poison_range"] = [float(res.x.min()), float(res.x.max())]
    if attack.curve:
        metrics.update(_gc_metrics(res, ds, norms, per_epoch, ref, tcfg))
    else:
        metrics["attack_config"] = _jsonable(res.config)
    return metrics, res, tgt.cpu(), ds


def _gc_metrics(res, ds, norms: dict, per_epoch: list, ref: float, tcfg) -> dict:
    """What a GC record holds beyond every attack's metrics: its learning curve, ‖g(μ)‖, the
    worst epoch of a per-epoch evaluation, the retraining's step count and example poisons."""
    return {
        "residual_initial": res.history["initial_residual"],  # ‖g(μ)‖ over the parameters GC's objective holds
        "grad_clean": norms["clean"],  # ‖g(μ)‖ over all parameters (Eq. 5)
        "gc_residual_curve": [round(v, 6) for v in res.history["residual"]],
        "gc_steps": res.history.get("steps"), "gc_stopped": res.history.get("stopped"),  # epochs run; budget / plateau / converged
        "poison_norm_mean": float(res.x.flatten(1).norm(dim=1).mean()),
        "retrained_acc_min_epoch": min(per_epoch) if per_epoch else None,  # None: the protocol does not evaluate every epoch
        "drop_min_epoch": min(per_epoch) - ref if per_epoch else None,
        "retrain_steps": _steps(len(ds.x_train) + res.n_poison, tcfg),
        "examples": poison_examples(res, ds),
    }


def poison_examples(res, ds, k: int = 8) -> dict:
    """The first ``k`` poisons and the clean points they started from (Fig. 8, 9), as
    lists rounded to 4 decimals so that a JSON record can hold them."""
    k = min(k, res.n_poison)
    clean = ds.x_train[res.init_index[:k]]
    as_list = lambda t: torch.round(t.float() * 1e4).div(1e4).tolist()  # noqa: E731
    return {"shape": list(ds.input_shape), "label": res.y[:k].tolist(), "clean": as_list(clean), "poison": as_list(res.x[:k])}


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(e, (bool, int, float, str)) for e in v):
            out[k] = list(v)
        elif isinstance(v, dict):
            out[k] = _jsonable(v)
    return out
