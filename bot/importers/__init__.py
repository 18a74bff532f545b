"""Importers: read a tool's own records (log files, usage APIs, CSV) and write them idempotently."""
