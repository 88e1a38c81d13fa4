"""Counter-based sampling: minibatch indices are a pure function of (seed, client id, step).

Nothing depends on which process holds a client or on how many clients a process holds, and there
is no generator state to checkpoint. The hash is SplitMix64 (Steele, Lea, Flood 2014) on numpy
uint64 arrays, whose wrap-around arithmetic is well defined. Sampling is uniform with replacement
(the modulo bias is below m/2^53). :func:`uniform` runs the same hash on torch tensors for dropout
masks. :func:`cohort` draws the clients of a communication round (client sampling) from (seed, round).
"""

from __future__ import annotations

import math

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def counter_bits(seed: int, clients: np.ndarray, step: int, count: int, stream: int = 0) -> np.ndarray:
    """``count`` 53-bit integers ``[len(clients), count]`` per client at ``step`` (uint64, below 2^53).

    ``stream`` > 0 gives an independent sequence for a second kind of draw at the same step (EPISODE's
    resampled gradient); stream 0 is the sequence of the steps' own minibatches.
    """
    key = _mix(np.array([seed % 2**64], dtype=np.uint64))  # the same for every client: hashed once
    key = _mix(key ^ np.asarray(clients, dtype=np.uint64))
    key = _mix(key ^ np.uint64(step % 2**64))
    if stream:
        key = _mix(key ^ np.uint64(stream % 2**64))
    j = np.arange(count, dtype=np.uint64)
    return _mix(key[:, None] + j[None, :] * _GOLDEN) >> np.uint64(11)


def derive_seed(seed: int, stream: int) -> int:
    """An independent seed for a named random stream (noise, sampling, ...) of the run seeded ``seed``."""
    key = _mix(np.array([seed % 2**64], dtype=np.uint64))
    return int(_mix(key ^ np.uint64(stream % 2**64))[0])


SAMPLING = 4  # the stream of client sampling (privacy.noise numbers its other streams 1-3)


def cohort(seed: int, round_: int, n_clients: int, *, size: int | None = None, rate: float | None = None) -> np.ndarray:
    """The sorted ids of the clients taking part in round ``round_``: ``size`` of the ``n_clients`` without
    replacement (uniformly among all subsets of that size), or each client independently with probability ``rate``.

    Poisson: client i takes part iff u(seed, i, round) < rate, u its 53-bit uniform of the sampling stream (one
    hash per client). Fixed size: Floyd's algorithm (Bentley & Floyd 1987), ``size`` draws from (seed, round),
    so a round costs O(size), not O(n_clients). Neither depends on which process asks.
    """
    key = derive_seed(seed, SAMPLING)
    if rate is not None:
        u = counter_bits(key, np.arange(n_clients, dtype=np.uint64), round_, 1)[:, 0].astype(np.float64) * 2.0**-53
        return np.flatnonzero(u < rate)
    assert size is not None and 0 <= size <= n_clients
    bits = counter_bits(key, np.array([2**63 - 1], dtype=np.uint64), round_, size)[0]  # a key no client id has
    chosen: set[int] = set()
    for j, b in zip(range(n_clients - size, n_clients), bits.tolist(), strict=True):
        pick = b % (j + 1)
        chosen.add(j if pick in chosen else pick)
    return np.array(sorted(chosen), dtype=np.int64)


def sample_indices(seed: int, clients: np.ndarray, step: int, batch: int, rows: int, stream: int = 0) -> np.ndarray:
    """Indices ``[len(clients), batch]`` in ``[0, rows)`` for each client at ``step`` (``stream``: see counter_bits)."""
    return (counter_bits(seed, clients, step, batch, stream) % np.uint64(rows)).astype(np.int64)


# -- the same hash on torch int64 tensors (any device), for dropout masks --------------------------
def _signed(v: int) -> int:
    return v - 2**64 if v >= 2**63 else v


def _srl(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (``>>`` on torch int64 is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def mix_tensor(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors with wrap-around; bit-identical to :func:`_mix`."""
    z = z + _signed(int(_GOLDEN))
    z = (z ^ _srl(z, 30)) * _signed(int(_M1))
    z = (z ^ _srl(z, 27)) * _signed(int(_M2))
    return z ^ _srl(z, 31)


def uniform(seed: int, clients: torch.Tensor, draw: int, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniforms ``[len(clients), *shape]`` in [0, 1) (float64, on ``clients.device``) from (seed, client, draw, stream).

    ``stream`` tells apart the independent arrays one draw needs (one per dropout mask). Entry j of
    client c is a hash of (seed, c, draw, stream, j) alone, so a client's numbers do not depend on
    the other clients computed with it, nor on the device.
    """
    key = mix_tensor(torch.full((len(clients),), _signed(seed % 2**64), dtype=torch.int64, device=clients.device))
    key = mix_tensor(key ^ clients.to(torch.int64))
    key = mix_tensor(key ^ _signed(draw % 2**64))
    key = mix_tensor(key ^ _signed(stream % 2**64))
    size = math.prod(shape)
    j = torch.arange(size, dtype=torch.int64, device=clients.device) * _signed(int(_GOLDEN))
    bits = _srl(mix_tensor(key[:, None] + j[None, :]), 11)
    return (bits.to(torch.float64) * 2.0**-53).view(len(clients), *shape)
