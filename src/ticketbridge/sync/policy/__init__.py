"""The support process as pure code: business calendars, SLA clocks, severity and escalation rules.

Nothing in this package does I/O or reads the clock; callers pass instants and data in.
"""
