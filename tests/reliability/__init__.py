"""Reliability: crashes, faults, several workers, bad input, secrets.

Each file also runs as a script that prints its figures."""
