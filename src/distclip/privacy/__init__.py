"""Differential privacy: seeded Gaussian noise, the local-DP channel, adaptive clipping and ε accounting.

- :mod:`.noise`: standard normals as a pure function of (seed, stream, client, round); ``secure`` uses OS entropy;
- :mod:`.channel`: a transport that adds N(0, (z·τ_i)² I) to every message client i sends (local DP);
- :mod:`.quantile`: the adaptive clipping norm of Andrew et al. 2021 (TF-Privacy sign convention);
- :mod:`.accountant`: ε after r noisy rounds, and σ for a target ε, from Opacus' RDP/PRV accountants;
- :mod:`.budget`: what a config means for privacy (noise scale, sensitivity, sampling rate, rounds).

Spec: algorithms.md §8, §9.
"""
