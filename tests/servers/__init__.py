"""Real servers for the API-engine tests: an OpenAI-compatible server (vLLM when importable, else
``transformers serve``), a local Messages-API server and a fault-injecting proxy, all on 127.0.0.1."""
