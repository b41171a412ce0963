"""poisonlib: executable companion to *Exploring the Limits of Model-Targeted
Indiscriminate Data Poisoning Attacks* (Lu, Kamath, Yu, ICML 2023).

Modules mirror the paper: :mod:`~poisonlib.theory` (Sec. 3, App. A),
:mod:`~poisonlib.data`, :mod:`~poisonlib.models`, :mod:`~poisonlib.train`,
:mod:`~poisonlib.attacks` (GradPC targets, Gradient Canceling),
:mod:`~poisonlib.experiments` (profiles and table cells),
:mod:`~poisonlib.results` (the results store), :mod:`~poisonlib.report` and
:mod:`~poisonlib.paper` (numbers *reported in the paper*).
"""

__version__ = "0.1.0"

from ._validation import PoisonlibError  # noqa: E402

__all__ = ["PoisonlibError", "__version__"]
