"""Systems under test: each started by the harness, same model config, same audio."""
