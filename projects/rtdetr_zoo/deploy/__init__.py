"""Deployment helpers: end-to-end ONNX export and ONNX Runtime inference."""
from .onnx_export import (DEFAULT_OPSET, RTDETROnnxWrapper,  # noqa: F401
                          bgr_to_onnx_input, compare_detections,
                          create_ort_session, default_input_shape,
                          export_onnx, load_detector, run_ort,
                          switch_to_deploy, torch_predict)

__all__ = [
    'DEFAULT_OPSET', 'RTDETROnnxWrapper', 'bgr_to_onnx_input',
    'compare_detections', 'create_ort_session', 'default_input_shape',
    'export_onnx', 'load_detector', 'run_ort', 'switch_to_deploy',
    'torch_predict'
]
