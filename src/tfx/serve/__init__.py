"""tfx serve: models kept warm behind an OpenAI-compatible HTTP API."""
