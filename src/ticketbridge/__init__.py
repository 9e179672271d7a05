"""ticketbridge: keep a support desk and engineering trackers in step."""

__version__ = "0.1.0"
