"""twofold.frontends."""
