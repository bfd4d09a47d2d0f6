"""Live transcription over WebSocket: the session core and one adapter per protocol.

``core`` is the session core (audio in, utterances and text out, in no protocol's terms)
and ``events`` what it emits; ``pcm``, ``vad``, ``turns`` and ``buffer`` are its parts.
``transcribe`` is its one way to a model; ``partials`` is the partial-result policy, its
scheduler shared by a replica's sessions among them; ``metrics`` counts; ``sessions`` holds
a replica's sessions; ``protocols`` speak to clients.
"""
