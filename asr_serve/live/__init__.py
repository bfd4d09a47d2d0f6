"""Live transcription over WebSocket: the session core and one adapter per protocol.

``session`` is the core (audio in, utterances and text out, in no protocol's terms) and
``events`` what it emits; ``pcm``, ``vad``, ``turns``, ``buffer`` and ``partials`` are its
parts. ``decode`` is its one way to a model, ``scheduler`` shares that among a replica's
sessions, ``metrics`` counts; ``config`` holds the settings; ``protocols`` speak to clients.
"""
