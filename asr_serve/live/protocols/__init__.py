"""Adapters between a client's WebSocket protocol and the live session core.

One module per protocol, each with a :class:`~.connection.LiveConnection` subclass the route
runs once it has authenticated and accepted the socket: ``openai_realtime`` (with its messages in
``openai_events``), ``funasr_runtime`` (FunASR's C++ runtime protocol) and
``funasr_realtime`` (funasr's Fun-ASR-Nano realtime server). ``connection`` is what they
share: serving one socket frame by frame, the error and close rules, the close codes.
"""
