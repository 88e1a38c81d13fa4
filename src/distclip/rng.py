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


def sample_indices(seed: int, clients: np.ndarray, step: int, batch: int, rows: int, stream: int = 0) -> np.ndarray:
    """Indices ``[len(clients), batch]`` in ``[0, rows)`` for each client at ``step``.

    ``stream`` > 0 gives an independent sequence for a second kind of draw at the same step (EPISODE's
    resampled gradient); stream 0 is the sequence of the steps' own minibatches.
    """
    key = _mix(np.full(len(clients), seed % 2**64, dtype=np.uint64))
    key = _mix(key ^ np.asarray(clients, dtype=np.uint64))
    key = _mix(key ^ np.uint64(step % 2**64))
    if stream:
        key = _mix(key ^ np.uint64(stream % 2**64))
    j = np.arange(batch, dtype=np.uint64)
    bits = _mix(key[:, None] + j[None, :] * _GOLDEN) >> np.uint64(11)
    return (bits % np.uint64(rows)).astype(np.int64)
