"""Pure time arithmetic on events, shared by agent and server (no I/O here)."""
