"""Owns the container's dependency set for a server run from the project's .venv: hides what the image lacks.

The image installs only ``serving/requirements.txt``; the .venv also holds scikit-learn and pandas, which
``import xgboost`` picks up when present (its sklearn wrapper), adding ~150 MB and ~1 s to every worker.
Python runs this file at start-up when its folder is on ``PYTHONPATH``; it marks each module named in
``BENCH_HIDDEN_MODULES`` (comma-separated) as not installed, so the server imports exactly what it would
import in the container. Without that variable it does nothing.
"""

import os
import sys

for _name in filter(None, os.environ.get("BENCH_HIDDEN_MODULES", "").split(",")):
    sys.modules[_name.strip()] = None  # importing it now raises ImportError, as if it were not installed
