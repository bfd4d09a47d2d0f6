"""The HTTP API: protocol models, multipart upload parsing and response rendering."""
