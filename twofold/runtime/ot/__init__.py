"""OT: base OT, IKNP/ALSZ extension, KK13 1-out-of-N, OTPack (built once per session)."""
