"""Adapters between a client's WebSocket protocol and the live session core.

One pair of modules per protocol: ``<protocol>.py`` holds the
:class:`~.connection.LiveConnection` subclass the route runs once it has authenticated and
accepted the socket, ``<protocol>_messages.py`` the messages it reads and sends.
``openai_realtime`` is OpenAI's Realtime transcription protocol, ``funasr_runtime`` FunASR's
C++ runtime protocol, ``funasr_realtime`` funasr's Fun-ASR-Nano realtime server.
``connection`` is what they share: serving one socket frame by frame, the error and close
rules, the close codes.
"""
