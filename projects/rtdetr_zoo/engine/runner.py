"""mmengine's Runner, reading checkpoints through :func:`read_checkpoint`."""
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from .checkpoint import extract_state_dict, read_checkpoint


@RUNNERS.register_module()
class RTDETRRunner(Runner):
    """``Runner`` whose ``load_checkpoint`` (used by ``load_from``, ``resume``
    and ``--resume``) reads with :func:`read_checkpoint`.

    mmengine 0.10.7's Runner calls ``torch.load`` with torch's default
    ``weights_only=True``, which refuses the numpy arrays and message-hub
    objects of its own checkpoints. Reading through :func:`read_checkpoint`
    allows exactly those types, with clear errors for a missing, truncated
    or undownloadable file. Selected by ``runner_type = 'RTDETRRunner'``
    (``configs/_base_/default_runtime.py``); registered in mmengine's root
    ``RUNNERS`` so that ``RUNNERS.build(cfg)`` finds it with or without a
    default scope.
    """

    def load_checkpoint(self, filename, map_location='cpu', strict=False,
                        revise_keys=((r'^module.', ''), )):
        """Same as :meth:`mmengine.runner.Runner.load_checkpoint`: load
        ``filename`` into the model (non-strict by default, DDP's
        ``module.`` stripped) after the ``after_load_checkpoint`` hooks. A
        checkpoint without ``state_dict`` (bare, or the official RT-DETR
        ``{'ema': {'module': ...}}``) is given one first, converted once by
        the detector's ``convert_official_layout`` where it has one (the
        EMA copy and the model then load the same tensors).

        Returns:
            dict: The whole checkpoint (``meta``, ``message_hub``, ...).
        """
        checkpoint = read_checkpoint(filename, map_location=map_location,
                                     logger=self.logger)
        model = self.model.module if is_model_wrapper(
            self.model) else self.model
        if 'state_dict' not in checkpoint:
            # A bare state dict or another framework's layout (the official
            # RT-DETR release keeps its weights under ``ema.module``): give
            # the hooks (EMAHook copies ``state_dict``) mmengine's layout.
            state_dict = extract_state_dict(checkpoint, source=filename)
            convert = getattr(model, 'convert_official_layout', None)
            if convert is not None:
                state_dict = convert(state_dict)
            checkpoint = dict(state_dict=state_dict,
                              meta=checkpoint.get('meta', {}))
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        checkpoint = _load_checkpoint_to_model(
            model, checkpoint, strict, revise_keys=list(revise_keys))
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint
