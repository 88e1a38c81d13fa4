"""Differential privacy: seeded Gaussian noise, the local-DP channel, adaptive clipping and ε accounting.

- :mod:`.noise`: standard normals as a pure function of (seed, stream, client, round); ``secure`` uses OS entropy;
- :mod:`.channel`: a transport that adds N(0, (z·τ_i)² I) to every message client i sends (local DP);
- :mod:`.quantile`: the adaptive clipping norm of Andrew et al. 2021 (TF-Privacy sign convention);
- :mod:`.accountant`: ε after r noisy rounds, and σ for a target ε, from Opacus' RDP/PRV accountants;
- :mod:`.dp`: the noise keys a private rule holds, and what local noise needs of its messages.

These are mechanisms below the algorithms; what a run's config means for its privacy budget (calibration,
the ε ledger) is :mod:`distclip.ledger`, beside the runner. docs/algorithms.md §8, §9.
"""
