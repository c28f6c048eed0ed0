"""relay-agent: runs Relay's jobs on this machine and reports back to the relay."""

__version__ = "0.1.0"
