"""Sinks: where counts and levels go (serial displays, the JSON stream)."""
