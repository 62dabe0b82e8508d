"""Linear layers with server-private weights: OT- and HE-based protocols (DESIGN.md §5)."""
