"""The edge towards Mistral's API."""
