"""Live transcription over WebSocket: the session core and one adapter per protocol.

``session`` is the core (audio in, utterances and text out, in no protocol's terms);
``pcm``, ``vad``, ``turns``, ``buffer`` and ``partials`` are its parts; ``scheduler`` shares
the model among a replica's sessions; ``protocols`` speak to clients.
"""
