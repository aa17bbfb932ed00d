"""Small shared blocks every family builder wires together."""
