"""Walking a model's layers, the models inside it included."""

from __future__ import annotations

import keras


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model` and of the models inside it, once each, in a stable order
    (breadth first, `model` itself first)."""
    seen, ordered, pending = set(), [], [model]
    while pending:
        layer = pending.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        ordered.append(layer)
        pending.extend(getattr(layer, "layers", []))
    return ordered
