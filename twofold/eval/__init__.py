"""twofold.eval."""
