"""The inference gateway: OpenAI-compatible chat, embeddings and models on Hanzo keys."""
