"""twofold.compiler."""
