"""Adapters between a client's WebSocket protocol and the live session core."""
