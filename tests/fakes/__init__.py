"""Test fakes: tiny models built from config, a fake OpenAI-compatible server, a fake Hub."""
