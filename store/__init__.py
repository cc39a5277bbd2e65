"""Durable dialogs: what a shard needs to pick its SUBSCRIBE dialogs up again after
a restart, in SQLite on one host or in PostgreSQL shared by several.

The shard uses ``DialogStore`` (driver.py) and plain ``DialogRecord``s; the
back-ends, the write-behind buffer and the leases stay behind it.
"""
