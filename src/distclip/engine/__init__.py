"""Engines: the training loop and the transports that carry client messages."""
