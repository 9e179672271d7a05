"""Reliability: crashes, faults, several workers, bad input and secrets; each file also runs as a script printing its figures."""
