"""Attacks on fair ordering, simulated round by round against the real checks."""
