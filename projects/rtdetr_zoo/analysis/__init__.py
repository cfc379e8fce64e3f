"""Analysis for use from your own code: CPU inference latency
(:func:`benchmark`, :func:`benchmark_onnx`) and parameter / FLOP counts
(:func:`config_complexity`). The command lines, the training-step timer,
the comparison with another git revision and the model-zoo table are the
checkout's ``tools/analysis/``."""
from .benchmark import (BACKENDS, OnnxFileRunner,  # noqa: F401
                        OnnxRuntimeRunner, PytorchRunner, benchmark,
                        benchmark_onnx, build_model, input_shape,
                        latency_stats, make_inputs, run_benchmark,
                        time_alternately, timed)
from .flops import (DetectorTensorForward, config_complexity,  # noqa: F401
                    model_complexity, sdpa_flop_jit)

__all__ = [
    'BACKENDS', 'DetectorTensorForward', 'OnnxFileRunner',
    'OnnxRuntimeRunner', 'PytorchRunner', 'benchmark', 'benchmark_onnx',
    'build_model', 'config_complexity', 'input_shape', 'latency_stats',
    'make_inputs', 'model_complexity', 'run_benchmark', 'sdpa_flop_jit',
    'time_alternately', 'timed'
]
