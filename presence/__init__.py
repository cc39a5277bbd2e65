"""Presence domain model shared by the shard engine, the QSA wire format and clients.

Nothing here does I/O: it is the vocabulary (presence documents, status and
failure reports) that every layer speaks.
"""
