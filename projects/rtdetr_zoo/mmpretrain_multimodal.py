"""Keep mmpretrain's multimodal models out of the import when they cannot load.

mmdet 3.3 imports mmpretrain (``mmdet/models/data_preprocessors/
reid_data_preprocessor.py``: ``from mmpretrain.models.utils.batch_augments
import ...``, guarded against ``ImportError`` only), and ``mmpretrain.models``
imports its multimodal models (BLIP, BLIP-2, CLIP, Flamingo, ...) whenever
``mmpretrain.utils.dependency.WITH_MULTIMODAL`` is true, i.e. whenever
``transformers>=4.28.0`` is installed. mmpretrain 1.2's BLIP code imports
``apply_chunking_to_forward``, ``find_pruneable_heads_and_indices`` and
``prune_linear_layer`` from ``transformers.modeling_utils``; transformers 5
removed them, mmpretrain falls back to ``PreTrainedModel = None`` and
``class BertPreTrainedModel(PreTrainedModel)`` raises ``TypeError: NoneType
takes no arguments``, so ``import mmdet.models`` (and everything that
imports it) fails.

:func:`skip_unloadable_mmpretrain_multimodal` sets that flag to ``False``
when the installed transformers is 5 or newer, before anything imports
``mmpretrain.models``. mmpretrain then registers its own placeholders for
the multimodal model names (``mmpretrain/models/multimodal/__init__.py``),
which raise an ``ImportError`` saying what is missing if one is built.
Nothing else changes: no environment variable, and with transformers 4 (or
none) the flag keeps mmpretrain's own value. The flag stays ``False``
afterwards, which is what it means: those models cannot be loaded in this
environment.
"""
import sys
from importlib.metadata import PackageNotFoundError, version

from mmengine.logging import print_log

# The first transformers major version whose modeling_utils lacks the
# helpers mmpretrain 1.2's multimodal models import.
FIRST_INCOMPATIBLE_TRANSFORMERS = 5


def installed_transformers_major() -> int | None:
    """The major version of the installed ``transformers`` distribution, or
    ``None`` when it is not installed (read from its metadata, without
    importing it)."""
    try:
        return int(version('transformers').split('.')[0])
    except PackageNotFoundError:
        return None


def skip_unloadable_mmpretrain_multimodal() -> bool:
    """Switch mmpretrain's multimodal models off if they cannot be imported.

    Must run before ``mmpretrain.models`` is first imported (the
    ``rtdetr_zoo`` package does it first thing); it imports only
    ``mmpretrain.utils.dependency`` (which does not import the models).

    Returns:
        bool: whether the switch was turned off here.
    """
    major = installed_transformers_major()
    if (major is None or major < FIRST_INCOMPATIBLE_TRANSFORMERS
            or 'mmpretrain.models' in sys.modules):
        return False
    from mmpretrain.utils import dependency
    if not dependency.WITH_MULTIMODAL:
        return False
    dependency.WITH_MULTIMODAL = False
    print_log(
        f'transformers {version("transformers")} is installed: mmpretrain '
        "1.2's multimodal models (BLIP, CLIP, ...) need transformers 4 and "
        'are not imported (rtdetr_zoo does not use them).',
        logger='current')
    return True
