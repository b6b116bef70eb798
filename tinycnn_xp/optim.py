"""Optimizers: SGD (the chapter's, with momentum), RMSprop, Adam and AdamW, as PyTorch defines them.

Each update is one pure function of arrays, ``update(params, grads, state, hyper, xp) -> (params,
state)``: ``fit``'s training step runs it after the gradients (compiled with them on JAX), and
``optimizer.step(model)`` runs it in a hand loop after ``model.loss_and_grad``. ``params`` and
``grads`` follow ``Sequential.parameters()``; ``state`` is one tuple per entry of ``slots``;
``hyper`` the step's numbers (``hyper()``, computed on the host: the rate of the epoch, and
Adam's bias corrections), so a compiled step never compiles again for a new rate.

Who owns what: the optimizer holds its settings, its schedule, its step count and, for
RMSprop and Adam, its per-parameter state (``optimizer.state``, by qualified name, bound anew at
every step). SGD's velocity stays the chapter's ``layer.velocity[name]``. A model remembers the
optimizer it was trained with (``model.optimizer``); checkpoints store its ``config()``, step
count and state. New arrays are bound, never changed in place (immutable arrays, JAX).
"""

from __future__ import annotations

from typing import Any

from . import _checks
from ._xp import move, to_numpy
from .schedules import Schedule, as_schedule, schedule_from_config

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "OPTIMIZERS", "BY_NAME",
           "optimizer_from_config",
           "sgd_update", "rmsprop_update", "adam_update"]

Array = Any


# -- the updates: pure functions of arrays ----------------------------------------------------------
def sgd_update(params: tuple, grads: tuple, velocities: tuple, lr: Any,
               momentum: Any = None, *, nesterov: bool = False,
               weight_decay: Any = None) -> tuple[tuple, tuple]:
    """``v <- momentum * v + grad`` and ``param <- param - lr * v``, per array: new
    ``(params, velocities)`` (``torch.optim.SGD`` with ``dampening=0``).

    ``momentum=None`` (or 0) is the chapter's plain ``param -= lr * grad``, velocities unchanged.
    ``weight_decay`` adds ``weight_decay * param`` to each gradient first; ``nesterov`` steps
    along ``grad + momentum * v``. Which terms there are is decided here in Python, so inside a
    compiled step it is fixed; the numbers may be traced values.
    """
    if weight_decay is not None:
        grads = tuple(g + weight_decay * p for p, g in zip(params, grads))
    if momentum is None or (isinstance(momentum, float) and momentum == 0.0):
        return tuple(p - lr * g for p, g in zip(params, grads)), velocities
    velocities = tuple(momentum * v + g for v, g in zip(velocities, grads))
    steps = tuple(g + momentum * v for g, v in zip(grads, velocities)) if nesterov else velocities
    return tuple(p - lr * s for p, s in zip(params, steps)), velocities


def rmsprop_update(params: tuple, grads: tuple, squares: tuple, buffers: tuple | None, lr: Any,
                   alpha: Any, eps: Any, momentum: Any = None, weight_decay: Any = None,
                   *, xp: Any) -> tuple[tuple, tuple, tuple | None]:
    """``s <- alpha s + (1 - alpha) g^2``, ``param <- param - lr g / (sqrt(s) + eps)`` (with
    ``momentum``: ``b <- momentum b + g / (sqrt(s) + eps)``, ``param <- param - lr b``):
    new ``(params, squares, buffers)`` (``torch.optim.RMSprop``, not centered)."""
    if weight_decay is not None:
        grads = tuple(g + weight_decay * p for p, g in zip(params, grads))
    squares = tuple(alpha * s + (1 - alpha) * (g * g) for s, g in zip(squares, grads))
    scaled = tuple(g / (xp.sqrt(s) + eps) for g, s in zip(grads, squares))
    if buffers is not None:
        buffers = tuple(momentum * b + d for b, d in zip(buffers, scaled))
        scaled = buffers
    return tuple(p - lr * d for p, d in zip(params, scaled)), squares, buffers


def adam_update(params: tuple, grads: tuple, first: tuple, second: tuple, lr: Any, beta1: Any,
                beta2: Any, eps: Any, correction1: Any, correction2: Any,
                weight_decay: Any = None, decoupled: bool = False,
                *, xp: Any) -> tuple[tuple, tuple, tuple]:
    """Adam: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, ``param <- param - lr /
    c1 * m / (sqrt(v) / sqrt(c2) + eps)`` with the bias corrections ``c = 1 - b ** step``: new
    ``(params, first moments, second moments)`` (``torch.optim.Adam``; ``decoupled``:
    ``AdamW``, which first shrinks each parameter by ``lr * weight_decay`` instead of adding
    ``weight_decay * param`` to its gradient)."""
    if weight_decay is not None:
        if decoupled:
            params = tuple(p * (1 - lr * weight_decay) for p in params)
        else:
            grads = tuple(g + weight_decay * p for p, g in zip(params, grads))
    first = tuple(beta1 * m + (1 - beta1) * g for m, g in zip(first, grads))
    second = tuple(beta2 * v + (1 - beta2) * (g * g) for v, g in zip(second, grads))
    size, root = lr / correction1, correction2 ** 0.5
    params = tuple(p - size * (m / (xp.sqrt(v) / root + eps))
                   for p, m, v in zip(params, first, second))
    return params, first, second


# -- the optimizers: settings, schedule, step count, state ----------------------------------------
class Optimizer:
    """Base class: the rate (``lr`` and a ``schedule``), the step count and the state.

    ``slots`` name the per-parameter arrays the optimizer keeps (``optimizer.state[slot][name]``
    by qualified name); ``settings()`` its numbers besides ``lr``; ``update`` its pure update.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, lr: float, schedule: Schedule | Any = None) -> None:
        self.lr = _checks.learning_rate(lr)
        self.schedule = as_schedule(schedule)
        #: steps taken (Adam's bias corrections count them)
        self.steps = 0
        #: ``{slot: {qualified name: array}}``, on the model's device; ``None`` before a step
        self.state: dict[str, dict[str, Array]] | None = None
        self._placement: Any = None  # where ``state`` was bound (then it needs no moving)

    # -- settings --------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-able settings: ``optimizer_from_config(opt.config())`` rebuilds it (without state)."""
        return {"class": type(self).__name__, "lr": self.lr, **self.settings(),
                "schedule": self.schedule.config()}

    def rate(self, epoch: int) -> float:
        """The learning rate of ``epoch``: the schedule's, checked (``ValueError`` naming
        ``schedule`` if it is not a finite number >= 0)."""
        return self.schedule.checked_rate(epoch, self.lr)

    def structure(self) -> tuple:
        """What fixes the update's operations (which terms it has): a compiled step's key."""
        return (type(self).__name__, tuple(sorted(self.settings().items())))

    def hyper(self, rate: float) -> tuple:
        """The numbers of the next step (after ``steps`` counts it), for ``update``."""
        raise NotImplementedError

    def update(self, params: tuple, grads: tuple, state: tuple, hyper: tuple,
               xp: Any) -> tuple[tuple, tuple]:
        raise NotImplementedError

    # -- state -----------------------------------------------------------------------------------
    def state_of(self, model: Any) -> tuple:
        """The state for ``model``'s parameters, one tuple per slot in ``params()`` order: the
        stored arrays, or zeros for a model it has not stepped yet (or whose parameters differ)."""
        names = [name for name, _, _ in model.parameters()]
        params, place = model.params(), model.placement
        held = self.state
        if held is None or any(set(held.get(slot, {})) != set(names) for slot in self.slots) or any(
                tuple(held[slot][n].shape) != tuple(p.shape)
                for slot in self.slots for n, p in zip(names, params)):
            return tuple(tuple(place.xp.zeros_like(p) for p in params) for _ in self.slots)
        if self._placement is place:  # bound by the last step, where the model is
            return tuple(tuple(held[slot][n] for n in names) for slot in self.slots)
        return tuple(tuple(move(held[slot][n], place, place.dtype) for n in names)
                     for slot in self.slots)

    def bind_state(self, model: Any, state: tuple) -> None:
        """Keep ``state`` (as ``update`` returned it) for ``model``'s parameters."""
        names = [name for name, _, _ in model.parameters()]
        self.state = {slot: dict(zip(names, arrays)) for slot, arrays in zip(self.slots, state)}
        self._placement = model.placement

    def load_state(self, steps: int, arrays: dict[str, dict[str, Any]]) -> Optimizer:
        """Take a step count and ``{slot: {name: array}}`` (from a checkpoint); returns self."""
        self.steps = _checks.non_negative_int(steps, "steps")
        self.state = {slot: dict(arrays[slot]) for slot in self.slots} if self.slots else None
        self._placement = None
        return self

    def step(self, model: Any, epoch: int = 0) -> None:
        """One update of ``model`` from its gradients (``d_weights``, ... as ``loss_and_grad``
        or ``backward`` bound them), at the rate the schedule gives ``epoch``: the hand loop's
        step (``fit`` runs the same ``update``). The model then remembers this optimizer."""
        rate = self.rate(_checks.non_negative_int(epoch, "epoch"))
        place = model.placement
        if place is None:
            raise RuntimeError("optimizer.step(model) needs gradients: call model.loss_and_grad first")
        state = self.state_of(model)
        grads = tuple(getattr(layer, "d_" + attr) for _, layer, attr in model.parameters())
        self.steps += 1
        params, state = self.update(model.params(), grads, state, self.hyper(rate), place.xp)
        model.bind(params)
        self.bind_state(model, state)
        model.optimizer = self

    def __getstate__(self) -> dict[str, Any]:
        """Pickles and deep copies hold host NumPy copies of the state (placed again when used)."""
        state = None if self.state is None else {
            slot: {name: to_numpy(array) for name, array in arrays.items()}
            for slot, arrays in self.state.items()}
        return {**self.__dict__, "state": state, "_placement": None}

    def __repr__(self) -> str:
        extra = "".join(f", {key}={value!r}" for key, value in self.settings().items())
        schedule = "" if self.schedule.kind == "constant" else f", schedule={self.schedule!r}"
        return f"{type(self).__name__}(lr={self.lr!r}{extra}{schedule})"


class SGD(Optimizer):
    """``torch.optim.SGD``: ``v <- momentum v + g``, ``param <- param - lr v`` (Nesterov: steps
    along ``g + momentum v``); ``weight_decay`` adds ``weight_decay * param`` to ``g``. The
    velocity is the chapter's ``layer.velocity[name]``."""

    slots = ("velocity",)

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, schedule: Schedule | Any = None) -> None:
        super().__init__(lr, schedule)
        self.momentum = _checks.momentum(momentum)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = nesterov
        self.weight_decay = _checks.non_negative_number(weight_decay, "weight_decay")

    def settings(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def structure(self) -> tuple:
        return ("SGD", self.momentum > 0, self.nesterov, self.weight_decay > 0)

    def hyper(self, rate: float) -> tuple:
        return (rate, self.momentum, self.weight_decay)

    def update(self, params: tuple, grads: tuple, state: tuple, hyper: tuple,
               xp: Any) -> tuple[tuple, tuple]:
        lr, momentum, decay = hyper
        params, velocities = sgd_update(params, grads, state[0], lr,
                                        momentum if self.momentum > 0 else None,
                                        nesterov=self.nesterov,
                                        weight_decay=decay if self.weight_decay > 0 else None)
        return params, (velocities,)

    def state_of(self, model: Any) -> tuple:
        return (model.velocities(),)

    def bind_state(self, model: Any, state: tuple) -> None:
        model.bind_velocities(state[0])

    def load_state(self, steps: int, arrays: dict[str, dict[str, Any]]) -> Optimizer:
        self.steps = _checks.non_negative_int(steps, "steps")
        return self  # the velocities are the layers' own, loaded with the parameters


class RMSprop(Optimizer):
    """``torch.optim.RMSprop`` (not centered): ``s <- alpha s + (1 - alpha) g^2``, ``param <-
    param - lr g / (sqrt(s) + eps)``, with an optional momentum buffer."""

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 schedule: Schedule | Any = None) -> None:
        super().__init__(lr, schedule)
        self.alpha = _checks.fraction(alpha, "alpha")
        self.eps = _checks.non_negative_number(eps, "eps")
        self.momentum = _checks.momentum(momentum)
        self.weight_decay = _checks.non_negative_number(weight_decay, "weight_decay")
        self.slots = ("square_avg", "momentum_buffer") if self.momentum > 0 else ("square_avg",)

    def settings(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay}

    def structure(self) -> tuple:
        return ("RMSprop", self.momentum > 0, self.weight_decay > 0)

    def hyper(self, rate: float) -> tuple:
        return (rate, self.alpha, self.eps, self.momentum, self.weight_decay)

    def update(self, params: tuple, grads: tuple, state: tuple, hyper: tuple,
               xp: Any) -> tuple[tuple, tuple]:
        lr, alpha, eps, momentum, decay = hyper
        params, squares, buffers = rmsprop_update(
            params, grads, state[0], state[1] if self.momentum > 0 else None, lr, alpha, eps,
            momentum, decay if self.weight_decay > 0 else None, xp=xp)
        return params, ((squares, buffers) if buffers is not None else (squares,))


class Adam(Optimizer):
    """``torch.optim.Adam``: bias-corrected first and second moments; ``weight_decay`` adds
    ``weight_decay * param`` to the gradient (L2)."""

    slots = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 schedule: Schedule | Any = None) -> None:
        super().__init__(lr, schedule)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_checks.fraction(betas[0], "betas[0]"), _checks.fraction(betas[1], "betas[1]"))
        self.eps = _checks.non_negative_number(eps, "eps")
        self.weight_decay = _checks.non_negative_number(weight_decay, "weight_decay")

    def settings(self) -> dict[str, Any]:
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def structure(self) -> tuple:
        return (type(self).__name__, self.weight_decay > 0)

    def hyper(self, rate: float) -> tuple:
        b1, b2 = self.betas
        return (rate, b1, b2, self.eps, self.weight_decay, 1 - b1 ** self.steps,
                1 - b2 ** self.steps)

    def update(self, params: tuple, grads: tuple, state: tuple, hyper: tuple,
               xp: Any) -> tuple[tuple, tuple]:
        lr, b1, b2, eps, decay, c1, c2 = hyper
        params, first, second = adam_update(params, grads, state[0], state[1], lr, b1, b2, eps,
                                            c1, c2, decay if self.weight_decay > 0 else None,
                                            self.decoupled, xp=xp)
        return params, (first, second)

    def __repr__(self) -> str:
        return super().__repr__().replace("betas=[", "betas=(").replace("], eps", "), eps")


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay (each parameter shrinks by
    ``lr * weight_decay`` per step; default 0.01)."""

    decoupled = True

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01,
                 schedule: Schedule | Any = None) -> None:
        super().__init__(lr, betas, eps, weight_decay, schedule)


#: The optimizer classes a checkpoint (and ``--optimizer``) may name.
OPTIMIZERS: dict[str, type[Optimizer]] = {cls.__name__: cls for cls in (SGD, RMSprop, Adam, AdamW)}
#: The same by the name a sweep's grid and ``--optimizer`` give: ``sgd``, ``rmsprop``, ...
BY_NAME: dict[str, type[Optimizer]] = {name.lower(): cls for name, cls in OPTIMIZERS.items()}


def optimizer_from_config(config: Any) -> Optimizer:
    """The optimizer ``config()`` describes (no state); ``ValueError`` if it describes none."""
    if not isinstance(config, dict) or config.get("class") not in OPTIMIZERS:
        raise ValueError(f"an optimizer must be {{'class': one of {sorted(OPTIMIZERS)}, ...}}, got "
                         f"{config!r:.200}")
    arguments = {key: value for key, value in config.items() if key != "class"}
    if "schedule" in arguments:
        arguments["schedule"] = schedule_from_config(arguments["schedule"])
    if "betas" in arguments and isinstance(arguments["betas"], list):
        arguments["betas"] = tuple(arguments["betas"])
    try:
        return OPTIMIZERS[config["class"]](**arguments)
    except TypeError as exc:
        raise ValueError(f"optimizer {config!r:.200}: {exc}") from None


def state_shapes(config: dict[str, Any],
                 parameters: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """``{"<slot>/<name>": shape}`` of the state an optimizer of ``config`` keeps for
    ``parameters`` (``{name: shape}``), without building anything big (SGD: none; its
    velocities are the layers')."""
    optimizer = optimizer_from_config(config)
    if isinstance(optimizer, SGD):
        return {}
    return {f"{slot}/{name}": shape for slot in optimizer.slots for name, shape in parameters.items()}

