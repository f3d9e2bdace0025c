"""Training code shared by the demo vision stack's trainers (``fit``: their one optimisation loop)."""
