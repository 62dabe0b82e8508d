"""twofold.runtime."""
