"""Counter-based sampling: minibatch indices are a pure function of (seed, client id, step).

Nothing depends on which process holds a client or on how many clients a process holds, and there
is no generator state to checkpoint. The hash is SplitMix64 (Steele, Lea, Flood 2014) on numpy
uint64 arrays, whose wrap-around arithmetic is well defined. Sampling is uniform with replacement
(the modulo bias is below m/2^53).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def counter_bits(seed: int, clients: np.ndarray, step: int, count: int) -> np.ndarray:
    """``count`` 53-bit integers ``[len(clients), count]`` per client at ``step`` (uint64, below 2^53)."""
    key = _mix(np.full(len(clients), seed % 2**64, dtype=np.uint64))
    key = _mix(key ^ np.asarray(clients, dtype=np.uint64))
    key = _mix(key ^ np.uint64(step % 2**64))
    j = np.arange(count, dtype=np.uint64)
    return _mix(key[:, None] + j[None, :] * _GOLDEN) >> np.uint64(11)


def derive_seed(seed: int, stream: int) -> int:
    """An independent seed for a named random stream (noise, sampling, ...) of the run seeded ``seed``."""
    key = _mix(np.array([seed % 2**64], dtype=np.uint64))
    return int(_mix(key ^ np.uint64(stream % 2**64))[0])


def sample_indices(seed: int, clients: np.ndarray, step: int, batch: int, rows: int) -> np.ndarray:
    """Indices ``[len(clients), batch]`` in ``[0, rows)`` for each client at ``step``."""
    return (counter_bits(seed, clients, step, batch) % np.uint64(rows)).astype(np.int64)
