"""The tests import the checkout's ``tools/analysis/`` modules (the timed
unit of work, the revision comparison, the model-zoo table) as
``tools.analysis.<module>``: they are not part of the installed package, so
the repository root goes first on ``sys.path``."""
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
