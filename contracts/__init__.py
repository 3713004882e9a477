"""Messages, events, subject names and error codes shared by every Sigrelay service.

This package depends on nothing of ours. Everything on the bus and in the
event log is a frozen msgspec Struct defined here, encoded as JSON.
"""
