"""Shared behaviour of the backbones: frozen stages and BN in eval mode."""
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader
from torch.nn.modules.batchnorm import _BatchNorm


class BackboneContractMixin:
    """``frozen_stages`` / ``norm_eval`` handling for timm/mmdet-style backbones.

    The defaults fit a backbone made of ``self.stem`` and a list of
    ``self.stages`` that outputs the stages in ``self.out_indices``; other
    layouts override :meth:`frozen_modules` (the modules of the stem and the
    first ``frozen_stages`` stages) and ``forward``. A subclass calls
    :meth:`_freeze_stages` at the end of ``__init__``.
    """

    def set_stage_args(self, out_indices, frozen_stages, num_stages):
        """Validate and store ``out_indices`` and ``frozen_stages``.

        ``out_indices`` must be a non-empty subset of ``0..num_stages - 1``
        and ``frozen_stages`` in ``-1..num_stages``; the error names the
        backbone, the argument and the bad value.
        """
        name = type(self).__name__
        out_indices = tuple(out_indices)
        bad = [i for i in out_indices if not 0 <= i < num_stages]
        if bad or not out_indices:
            raise ValueError(
                f'{name} out_indices must be a non-empty subset of '
                f'0..{num_stages - 1}, got {out_indices}')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'{name} frozen_stages must be in '
                             f'-1..{num_stages}, got {frozen_stages}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages

    def frozen_modules(self):
        if self.frozen_stages < 0:
            return []
        return [self.stem] + list(self.stages[:self.frozen_stages])

    def forward(self, x):
        """(B, 3, H, W) -> tuple of the ``out_indices`` stage outputs."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self):
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        BaseModule.train(self, mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights_or_load_pretrained(self, default_init):
        """``init_weights`` for backbones with their own default init.

        A ``Pretrained`` init_cfg is loaded by :meth:`load_pretrained`;
        otherwise ``default_init()`` runs, followed by any other init_cfg.
        """
        if self.init_cfg is not None and self.init_cfg.get(
                'type') == 'Pretrained':
            self.load_pretrained(self.init_cfg)
            self._is_init = True
            return
        default_init()
        if self.init_cfg is None:
            self._is_init = True
        else:
            BaseModule.init_weights(self)

    def convert_pretrained(self, state_dict):
        """Map a foreign checkpoint layout to ours (identity by default)."""
        return state_dict

    def load_pretrained(self, init_cfg):
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)``.

        Unwraps ``state_dict`` / ``model`` / ``state_dict_ema``, keeps the keys
        under ``prefix`` (e.g. ``'backbone.'`` of a detector checkpoint),
        strips DDP's ``module.``, converts with :meth:`convert_pretrained` and
        loads non-strictly, logging what was loaded, missing and unexpected.
        """
        name = type(self).__name__
        logger = MMLogger.get_current_instance()
        if 'checkpoint' not in init_cfg:
            raise KeyError(f'{name} init_cfg of type Pretrained needs a '
                           f'"checkpoint", got {dict(init_cfg)}')
        ckpt = CheckpointLoader.load_checkpoint(
            init_cfg['checkpoint'], map_location='cpu', logger=logger)
        state = ckpt
        for key in ('state_dict', 'model', 'state_dict_ema'):
            if isinstance(ckpt, dict) and key in ckpt:
                state = ckpt[key]
                break
        prefix = init_cfg.get('prefix')
        if prefix:
            prefix = prefix if prefix.endswith('.') else prefix + '.'
            state = {k[len(prefix):]: v for k, v in state.items()
                     if k.startswith(prefix)}
            if not state:
                raise KeyError(f'{name}: no key of {init_cfg["checkpoint"]} '
                               f'starts with prefix {prefix!r}')
        state = {k[7:] if k.startswith('module.') else k: v
                 for k, v in state.items()}
        state = self.convert_pretrained(state)
        missing, unexpected = self.load_state_dict(state, strict=False)
        logger.info(f'{name}: loaded {len(state) - len(unexpected)} tensors '
                    f'from {init_cfg["checkpoint"]}')
        if missing:
            logger.warning(f'{name}: keys missing in the checkpoint: {missing}')
        if unexpected:
            logger.warning(
                f'{name}: unexpected keys in the checkpoint: {unexpected}')
