"""INT8 calibration: a calibration set built from real windows by the runtime's own source,
flow and stack code (calibration.dataset), and explicit quantisation of each exported part into
one Q/DQ ONNX graph that ONNX Runtime, OpenVINO and TensorRT all run (calibration.quantize)."""
