"""twofold.backends."""
