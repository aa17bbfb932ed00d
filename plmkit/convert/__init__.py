"""The edge: foreign checkpoint formats and the name maps between them and our modules."""
