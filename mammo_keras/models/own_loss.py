"""`OwnLossModel`: the compile contract of wrapper models that compute their loss themselves."""

from __future__ import annotations

import keras


class OwnLossModel(keras.Model):
    """A `keras.Model` whose `compute_loss` is the loss: `compile` takes no `loss`, and a model
    loaded from a checkpoint re-compiles its optimizer so that `fit` resumes.

    Subclasses set `loss_name`, the class that configures their loss (for the error)."""

    loss_name = "its loss configuration"

    def compile(self, optimizer="adamw", loss=None, **kwargs):
        """`keras.Model.compile` without `loss`."""
        if loss is not None:
            raise ValueError(f"{type(self).__name__} computes its own loss; configure it with "
                             f"{self.loss_name} and call compile() without `loss`.")
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config: dict) -> None:
        """Re-compile a loaded model (optimizer, metrics) so that `fit` can resume."""
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        self.optimizer.build(self.trainable_variables)
