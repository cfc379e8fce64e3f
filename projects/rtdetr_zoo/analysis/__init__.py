"""Analysis: CPU benchmark, parameter / FLOP counts, the model-zoo table."""
from .benchmark import (BACKENDS, OnnxRuntimeRunner,  # noqa: F401
                        PytorchRunner, benchmark, build_model, input_shape,
                        make_inputs, run_benchmark)
from .flops import (DetectorTensorForward, config_complexity,  # noqa: F401
                    model_complexity, sdpa_flop_jit)
from .model_zoo_table import model_zoo_table  # noqa: F401

__all__ = [
    'BACKENDS', 'DetectorTensorForward', 'OnnxRuntimeRunner',
    'PytorchRunner', 'benchmark', 'build_model', 'config_complexity',
    'input_shape', 'make_inputs', 'model_complexity', 'model_zoo_table',
    'run_benchmark', 'sdpa_flop_jit'
]
