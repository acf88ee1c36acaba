"""Doctest collection of the package: leave out the modules whose optional extra is absent."""

import importlib.util

OPTIONAL = {"mammo_keras/bench/torch_peers.py": "torch",
            "mammo_keras/dashboard/app.py": "streamlit"}

collect_ignore = [path for path, module in OPTIONAL.items()
                  if importlib.util.find_spec(module) is None]
