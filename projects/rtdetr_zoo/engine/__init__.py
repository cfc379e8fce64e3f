"""Training-engine components: optimizer wrappers, hooks, CPU DDP."""
from .distributed import (CPUDistributedDataParallel,  # noqa: F401
                          setup_cpu_distributed)
from .hooks import (DatasetCheckHook, NonFiniteLossHook,  # noqa: F401
                    RandomStateHook)
from .optim_wrapper import (NonFiniteGuardAmpOptimWrapper,  # noqa: F401
                            NonFiniteGuardMixin, NonFiniteGuardOptimWrapper)
