"""twofold: compile ONNX models into dealer-free two-party secure inference programs."""

__version__ = "0.1.0"
