"""How an epoch of ``fit`` runs: layer by layer, on the fast path, or on the fast path compiled.

- ``GeneralPath``: every model; the layers' own ``forward``/``backward`` through the model's
  ``loss_and_grad`` and ``step`` (``check=False``: the data was checked once).
- ``FastPath``: models whose stack ``fastpath.plan`` knows; the whole step is one function of
  arrays, the parameters are held here for an epoch and bound to the layers at its end.
- ``CompiledPath``: the fast path on JAX, compiled with ``jax.jit``: one dispatch per step (the
  batch is sliced inside the compiled step) and one for the epoch's metrics. Compiled functions
  are kept by architecture, image size, device, dtype and batch size, so a new model of the same
  architecture does not compile again.

``training`` picks one per fit; each gives ``encode`` (the labels, one-hot, once per fit),
``epoch`` (the steps over one shuffled pass) and ``metrics`` (the epoch's numbers as one device
vector: train loss, summed validation loss, correct predictions on both sets, all-finite flag).
"""

from __future__ import annotations

import functools
from typing import Any

from . import evaluation, fastpath
from .losses import one_hot

__all__ = ["GeneralPath", "FastPath", "CompiledPath"]

Array = Any


class GeneralPath:
    """Layer by layer, through the model's own ``loss_and_grad`` and ``step``."""

    def __init__(self, model: Any, xp: Any, dtype: Any) -> None:
        self.model, self.xp, self.dtype = model, xp, dtype

    def encode(self, labels: Array, classes: int) -> Array:
        return one_hot(labels, classes, self.dtype, self.xp)  # (n, classes)

    def epoch(self, x: Array, targets: Array, order: Array, batch_size: int, lr: float,
              momentum: float, interrupt: Any) -> tuple[Any, int]:
        """Mini-batch steps over the data in ``order``: what ``metrics`` needs for the train loss
        and the number of steps taken (fewer if ``interrupt.requested`` stopped it)."""
        xp, model = self.xp, self.model
        x, targets = xp.take(x, order, axis=0), xp.take(targets, order, axis=0)
        total: Any = None
        steps = 0
        for start, stop in evaluation.chunks(x.shape[0], batch_size):
            loss, _ = model.loss_and_grad(x[start:stop, ...], targets[start:stop, ...], check=False)
            model.step(lr, momentum, check=False)
            total, steps = (loss if total is None else total + loss), steps + 1
            if interrupt.requested:
                break
        return total / steps, steps

    def logits(self, x: Array) -> Array:
        return self.model.forward(x, check=False, cache=False)

    def metrics(self, train_loss: Array, datasets: evaluation.TrainAndValidation) -> Array:
        return _metrics(train_loss, datasets.totals(self.logits),
                        [getattr(layer, attr) for _, layer, attr in self.model.parameters()],
                        self.xp)


class FastPath:
    """A ``fastpath.Plan``'s step, batch by batch."""

    def __init__(self, plan: fastpath.Plan, momentum: bool, xp: Any, dtype: Any) -> None:
        self.plan, self.xp, self.dtype = plan, xp, dtype
        self.step = functools.partial(fastpath.train_step, plan.blocks, xp, momentum)

    def encode(self, labels: Array, classes: int) -> Array:
        return one_hot(labels, classes, self.dtype, self.xp).mT  # (classes, n)

    def epoch(self, x: Array, targets: Array, order: Array, batch_size: int, lr: float,
              momentum: float, interrupt: Any) -> tuple[Any, int]:
        xp = self.xp
        x, targets = xp.take(x, order, axis=0), xp.take(targets, order, axis=1)
        params, velocities = self.params()
        grads, probabilities = None, []
        for start, stop in evaluation.chunks(x.shape[0], batch_size):
            params, velocities, grads, p = self.step_at(params, velocities, x, targets, start, stop,
                                                      lr, momentum)
            probabilities.append(p)
            if interrupt.requested:
                break
        if grads is not None:  # at least one step was taken
            self.bind(params, velocities, grads, 1.0 if momentum else lr)
        epoch_probabilities = probabilities[0] if len(probabilities) == 1 else xp.concat(
            probabilities, axis=1)
        # The epoch's last parameters go along: the metrics need them, as the plan's shapes.
        return (epoch_probabilities, targets, batch_size, params), len(probabilities)

    def params(self) -> tuple[tuple, tuple]:
        """The layers' parameters and velocities in the plan's shapes (``Plan.params``)."""
        return self.plan.params()

    def bind(self, params: tuple, velocities: tuple, grads: tuple, grad_scale: Any) -> None:
        """Bind a step's results to the layers (``Plan.bind``)."""
        self.plan.bind(params, velocities, grads, grad_scale)

    def step_at(self, params: tuple, velocities: tuple, x: Array, targets: Array, start: int,
                stop: int, lr: float, momentum: float) -> tuple:
        """One step on images ``x[start:stop]``: ``(params, velocities, grads, probabilities)``."""
        return self.step(params, velocities, x[start:stop, ...], targets[:, start:stop], lr,
                         momentum)

    def logits(self, x: Array) -> Array:
        params, _ = self.params()
        return self.plan.logits(params, x).mT

    def _logits_of(self, params: tuple) -> Any:
        return lambda x: self.plan.logits(params, x).mT

    def metrics(self, losses: tuple, datasets: evaluation.TrainAndValidation) -> Array:
        probabilities, targets, batch_size, params = losses
        totals = datasets.totals(self._logits_of(params))
        return _metrics(fastpath.batch_losses(probabilities, targets, batch_size, self.xp), totals,
                        params, self.xp)


#: Compiled functions by (what, architecture and placement, batch size or data shapes).
_COMPILED: dict[tuple, Any] = {}


class CompiledPath(FastPath):
    """The fast path compiled by ``jax.jit`` (see the module); ``key`` names the architecture,
    image size, device, dtype and whether there is momentum."""

    def __init__(self, plan: fastpath.Plan, momentum: bool, xp: Any, dtype: Any,
                 key: tuple) -> None:
        super().__init__(plan, momentum, xp, dtype)
        self.key, self.momentum = key, momentum

    def params(self) -> tuple[tuple, tuple]:
        arrays = self.plan.layer_arrays()
        shapes = tuple(tuple(a.shape) for a in arrays)
        return self._compiled("params", shapes, lambda jax: self.plan.to_plan)(arrays)

    def bind(self, params: tuple, velocities: tuple, grads: tuple, grad_scale: Any) -> None:
        self.plan.assign(self._compiled("bind", None, lambda jax: self.plan.to_layers)(
            params, velocities, grads, grad_scale))

    def _compiled(self, what: str, size: Any, build: Any) -> Any:
        import jax  # here only: the arrays are JAX's already

        name = (what, self.key, size)
        if name not in _COMPILED:
            _COMPILED[name] = jax.jit(build(jax))
        return _COMPILED[name]

    def step_at(self, params: tuple, velocities: tuple, x: Array, targets: Array, start: int,
                stop: int, lr: float, momentum: float) -> tuple:
        size, blocks, xp, use_momentum = stop - start, self.plan.blocks, self.xp, self.momentum

        def build(jax: Any) -> Any:
            def sliced(params: tuple, velocities: tuple, x: Array, targets: Array, start: Any,
                       lr: Any, momentum: Any) -> tuple:
                batch = jax.lax.dynamic_slice_in_dim(x, start, size, axis=0)
                batch_targets = jax.lax.dynamic_slice_in_dim(targets, start, size, axis=1)
                return fastpath.train_step(blocks, xp, use_momentum, params, velocities, batch,
                                           batch_targets, lr, momentum)
            return sliced
        return self._compiled("step", size, build)(params, velocities, x, targets, start, lr,
                                                   momentum)

    def _chunk(self, params: tuple, x: Array, y: Array, start: int, stop: int) -> tuple:
        """``evaluation.totals`` of images ``x[start:stop]``, compiled (sliced inside)."""
        plan, xp, size = self.plan, self.xp, stop - start

        def build(jax: Any) -> Any:
            def chunk(params: tuple, x: Array, y: Array, start: Any) -> tuple:
                images = jax.lax.dynamic_slice_in_dim(x, start, size, axis=0)
                labels = jax.lax.dynamic_slice_in_dim(y, start, size, axis=0)
                return evaluation.totals(lambda i: plan.logits(params, i).mT, images, labels,
                                         size, xp)
            return chunk
        return self._compiled("chunk", (tuple(x.shape[1:]), size), build)(params, x, y, start)

    def metrics(self, losses: tuple, datasets: evaluation.TrainAndValidation) -> Array:
        """One compiled call for the epoch's end where the two sets go through in one piece;
        otherwise one per chunk, then one that adds them up."""
        probabilities, targets, batch_size, params = losses
        plan, xp, n_train = self.plan, self.xp, datasets.n_train
        if datasets.joint is not None:
            def build(jax: Any) -> Any:
                def epoch_end(params: tuple, probabilities: Array, targets: Array, x: Array,
                              y: Array) -> Array:
                    train_loss = fastpath.batch_losses(probabilities, targets, batch_size, xp)
                    totals = evaluation.joint_totals(lambda i: plan.logits(params, i).mT,
                                                     x, y, n_train, xp)
                    return _metrics(train_loss, totals, params, xp)
                return epoch_end
            shapes = (tuple(probabilities.shape), tuple(datasets.joint[0].shape), batch_size,
                      n_train)
            return self._compiled("metrics", shapes, build)(params, probabilities, targets,
                                                            *datasets.joint)
        x_train, y_train, x_val, y_val = datasets.sets
        parts = [[self._chunk(params, x, y, start, stop)
                  for start, stop in evaluation.chunks(x.shape[0], datasets.size)]
                 for x, y in ((x_train, y_train), (x_val, y_val))]

        def build_sum(jax: Any) -> Any:
            def epoch_end(params: tuple, probabilities: Array, targets: Array,
                          parts: list) -> Array:
                train_loss = fastpath.batch_losses(probabilities, targets, batch_size, xp)
                (train, val), add = parts, (lambda values: functools.reduce(
                    lambda a, b: a + b, values))
                totals = (add([c for _, c in train]), add([s for s, _ in val]),
                          add([c for _, c in val]))
                return _metrics(train_loss, totals, params, xp)
            return epoch_end
        shapes = (tuple(probabilities.shape), batch_size, len(parts[0]), len(parts[1]))
        return self._compiled("sums", shapes, build_sum)(params, probabilities, targets, parts)


def _metrics(train_loss: Array, totals: tuple[Array, Array, Array], params: list | tuple,
             xp: Any) -> Array:
    """``[train loss, summed validation loss, train correct, validation correct, all finite]``."""
    train_correct, val_loss, val_correct = totals
    # The parameters too: an overflowed conv bias behind a ReLU leaves every loss finite.
    finite = xp.all(xp.isfinite(xp.concat([xp.reshape(p, (-1,)) for p in params])))
    return xp.stack([train_loss, val_loss, train_correct, val_correct,
                     xp.astype(finite, train_loss.dtype)])

