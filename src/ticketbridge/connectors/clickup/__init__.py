"""ClickUp API v2: client, connector and emulator."""
