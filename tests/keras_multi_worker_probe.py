"""A plain Keras `fit` under MultiWorkerMirroredStrategy, one worker per process, for
tests/test_distribute.py: with `--fixes`, inside `keras_distribute_fixes()`.

    TF_CONFIG=... python tests/keras_multi_worker_probe.py [--fixes]

Prints "FIT OK" when two epochs train, else the error's last line.
"""

import contextlib
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    import keras
    import numpy as np
    import tensorflow as tf

    from mammo_keras.training.keras_distribute_fixes import keras_distribute_fixes

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    images = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(32) % 3)).batch(8)
    fixes = keras_distribute_fixes() if "--fixes" in sys.argv else contextlib.nullcontext()
    try:
        with fixes:
            model.fit(data, epochs=2, verbose=0)
    except Exception as error:  # the outcome is what this probe reports
        print("FIT FAILED", type(error).__name__, str(error).strip().splitlines()[-1][:300])
        return 0
    print("FIT OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
