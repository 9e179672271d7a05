"""PagerDuty Events API v2: a thin client (`client.py`) for paging from SLA escalations, and a
stateful loopback emulator of `POST /v2/enqueue` (`emulator.py`) to test it against."""
