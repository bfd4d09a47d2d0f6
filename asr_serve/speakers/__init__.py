"""Who spoke: speaker embeddings, clustering a file's speech, labelling live utterances.

- :mod:`~asr_serve.speakers.ge2e`: the GE2E speaker encoder (weights from the
  ``resemblyzer`` wheel), the model the ``Speakers`` deployment runs.
- :mod:`~asr_serve.speakers.clips`: a file's speech regions cut into clips to embed.
- :mod:`~asr_serve.speakers.clustering`: a file's clips grouped into speakers, named by
  reference clips where the request gives them.
- :mod:`~asr_serve.speakers.online`: a live session's utterances assigned to its speakers
  as they come.
- :mod:`~asr_serve.speakers.labels`: speakers labelled ``A``, ``B``, … and turns put on a
  transcript's words and segments.
"""
