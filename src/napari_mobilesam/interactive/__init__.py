"""The interactive loop without Qt: the plane shown, prompts to objects, decoding, settings."""
