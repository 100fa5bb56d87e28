"""The RL policy as a numpy forward pass (the live service never imports torch).

A policy maps the standardised feature vector (``(x - obs_mean) / obs_std``) through dense
layers (``tanh`` for PPO's actor, ``relu`` for DQN's Q-network, the stable-baselines3 defaults)
to one output per action: PPO logits or DQN Q-values. The chosen action is the arg-max, which is
PPO's deterministic action and DQN's greedy action. Each action is a row of ``actions``: weights
over ``strategies`` (a one-hot per strategy plus equal weight, see ``ata.strategy.rl``).

Arrays (``to_arrays`` / ``from_arrays``, stored as ``.npz`` by the shell): ``kind``,
``activation``, ``strategies``, ``actions``, ``obs_mean``, ``obs_std``, ``W0, b0, W1, b1, ...``
(the last pair is the output layer; ``W`` has shape (out, in) as in torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ACTIVATIONS = ("tanh", "relu")


class PolicyError(ValueError):
    """A policy file is malformed or does not fit the configured strategies or features."""


class PolicyOutputError(PolicyError):
    """A loaded policy computed an unusable output at run time (e.g. non-finite logits from a degenerate
    standardisation): its choice means nothing and must not be traded on."""


@dataclass(frozen=True)
class NumpyPolicy:
    kind: str
    activation: str
    strategies: tuple[str, ...]
    actions: FloatArray
    obs_mean: FloatArray
    obs_std: FloatArray
    weights: tuple[FloatArray, ...]
    biases: tuple[FloatArray, ...]
    _layers: tuple[tuple[FloatArray, FloatArray], ...] = field(init=False, repr=False, compare=False)
    _relu: bool = field(init=False, repr=False, compare=False)
    # One output buffer per layer, reused by every forward pass (no per-call allocation): a policy
    # object must not be used from two threads at once.
    _scratch: tuple[FloatArray, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise PolicyError(f"unknown activation {self.activation!r}")
        if not self.weights or len(self.weights) != len(self.biases):
            raise PolicyError("a policy needs matching weight and bias layers")
        n_in = self.obs_mean.shape[0]
        if self.obs_std.shape != (n_in,) or np.any(self.obs_std <= 0):
            raise PolicyError("obs_std must be positive and match obs_mean")
        for w, b in zip(self.weights, self.biases, strict=True):
            if w.ndim != 2 or w.shape[1] != n_in or b.shape != (w.shape[0],):
                raise PolicyError(f"layer shapes do not chain: {w.shape} after {n_in} inputs")
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                raise PolicyError("non-finite policy weights")
            n_in = w.shape[0]
        if self.actions.shape != (n_in, len(self.strategies)) or np.any(self.actions < 0):
            raise PolicyError(f"actions must be non-negative with shape ({n_in}, {len(self.strategies)})")
        # The standardisation folded into the first layer: W0 ((x - m) / s) + b0 == (W0 / s) x + (b0 - (W0 / s) m).
        first = self.weights[0] / self.obs_std
        folded = (np.ascontiguousarray(first), *self.weights[1:])
        object.__setattr__(self, "_layers", tuple(zip(folded, (self.biases[0] - first @ self.obs_mean, *self.biases[1:]),
                                                       strict=True)))
        object.__setattr__(self, "_relu", self.activation == "relu")
        object.__setattr__(self, "_scratch", tuple(np.empty(w.shape[0]) for w in self.weights))

    @property
    def n_features(self) -> int:
        return int(self.obs_mean.shape[0])

    def _forward(self, obs: FloatArray) -> FloatArray:
        """The output layer of a raw observation, in a scratch buffer the next call overwrites."""
        x = obs
        last = self._scratch[-1]
        for (w, b), out in zip(self._layers, self._scratch, strict=True):
            np.dot(w, x, out=out)
            np.add(out, b, out=out)
            if out is not last:
                if self._relu:
                    np.maximum(out, 0.0, out=out)
                else:
                    np.tanh(out, out=out)
            x = out
        return x

    def outputs(self, obs: FloatArray) -> FloatArray:
        """Logits (PPO) or Q-values (DQN) of a raw (unstandardised) observation."""
        return self._forward(obs).copy()

    def act(self, obs: FloatArray) -> int:
        """The chosen action; :class:`PolicyOutputError` when an output is not finite (arg-max would pick
        the first NaN, an arbitrary action)."""
        out = self._forward(obs)
        if not np.isfinite(out).all():
            raise PolicyOutputError(f"non-finite policy outputs {out.tolist()}")
        return int(out.argmax())

    def strategy_weights(self, obs: FloatArray) -> dict[str, float]:
        """Weights over strategies of the chosen action."""
        row = self.actions[self.act(obs)]
        return dict(zip(self.strategies, row.tolist(), strict=True))

    def to_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "kind": np.array(self.kind), "activation": np.array(self.activation), "strategies": np.array(self.strategies),
            "actions": self.actions, "obs_mean": self.obs_mean, "obs_std": self.obs_std,
        }
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"W{i}"], arrays[f"b{i}"] = w, b
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[np.generic]]) -> NumpyPolicy:
        try:
            n_layers = sum(1 for k in arrays if k.startswith("W"))
            return cls(
                kind=str(arrays["kind"]),
                activation=str(arrays["activation"]),
                strategies=tuple(str(s) for s in np.asarray(arrays["strategies"]).tolist()),
                actions=np.asarray(arrays["actions"], dtype=np.float64),
                obs_mean=np.asarray(arrays["obs_mean"], dtype=np.float64),
                obs_std=np.asarray(arrays["obs_std"], dtype=np.float64),
                weights=tuple(np.asarray(arrays[f"W{i}"], dtype=np.float64) for i in range(n_layers)),
                biases=tuple(np.asarray(arrays[f"b{i}"], dtype=np.float64) for i in range(n_layers)),
            )
        except KeyError as exc:
            raise PolicyError(f"policy arrays miss {exc.args[0]!r}") from None
