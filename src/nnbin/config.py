"""What a training run does besides the data and the step size: the hidden activation, the
optimizer, mini-batches, the L2 penalty and the stopping rule. The defaults are the seed
job's (sigmoid units, plain full-batch gradient descent, no penalty, every step run).

The values are declared and checked in :mod:`nnbin.options` at the entry points;
:meth:`Config.of` gathers the checked ones the loop reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Config:
    #: hidden-layer activation: "sigmoid", "tanh", "relu" or "identity"
    activation: str = "sigmoid"
    #: the optimizer, "gd", "momentum", "adam" or "lbfgs", and its hyperparameters (the step size is
    #: the run's: :meth:`nnbin.optim.Optimizer.of` builds the update rule from both)
    optimizer: str = "gd"
    momentum: float = 0.9
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    #: samples per mini-batch, drawn from a seeded shuffle each epoch; None: full batch
    batch_size: int | None = None
    #: L2 penalty on the weights, scikit-learn's scaling: (alpha / 2n) sum ||W||^2
    alpha: float = 0.0
    #: reshuffle the samples each epoch (False: the batches in the data's order)
    shuffle: bool = True
    #: seed of the shuffles and of the validation split (drawn on the host with NumPy, so
    #: the batch order is the same on every backend)
    shuffle_seed: int = 0
    #: hold out ``validation_fraction`` of the samples and stop when their accuracy has not
    #: improved by ``tol`` for ``n_iter_no_change`` epochs, keeping the best parameters
    early_stopping: bool = False
    validation_fraction: float = 0.1
    #: epochs without improvement before stopping; None: never stop early on the training
    #: loss (with ``early_stopping`` it defaults to 10)
    n_iter_no_change: int | None = None
    tol: float = 1e-4
    #: the step-size schedule of gd and momentum, scikit-learn's (:class:`nnbin.rules.Schedule`):
    #: "constant", "invscaling" (with ``power_t``, counting from ``samples_seen``) or
    #: "adaptive" (a fifth each time the stopping rule fires)
    learning_rate: str = "constant"
    power_t: float = 0.5
    samples_seen: int = 0
    #: L-BFGS's limit on evaluations of the loss and gradient (scikit-learn's ``max_fun``)
    max_fun: int = 15000
    #: replay the core's steps as CUDA graphs on CUDA arrays (torch): True requires it,
    #: None and False run them eagerly (None: the default, until a GPU run verifies it)
    cuda_graphs: bool | None = None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Config:
        """The configuration of a run from its checked options (:func:`nnbin.options.resolve`):
        the fields of the same names, and the seed of the shuffles."""
        same = {f.name for f in fields(cls)} - {"shuffle_seed"}
        return cls(**{k: options[k] for k in same}, shuffle_seed=options["seed"])

    @property
    def stops(self) -> bool:
        """Whether a stopping rule reads the loss or the validation score every epoch."""
        return self.early_stopping or self.n_iter_no_change is not None

    @property
    def plain_descent(self) -> bool:
        """Full-batch gradient descent at a constant step size with no stopping rule: the
        seed job's loop (any activation, depth and penalty)."""
        return (
            self.optimizer == "gd"
            and self.batch_size is None
            and not self.stops
            and self.learning_rate == "constant"
        )

    @property
    def patience(self) -> int:
        return 10 if self.n_iter_no_change is None else self.n_iter_no_change


SEED = Config()
