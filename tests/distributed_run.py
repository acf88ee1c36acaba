"""One training process for tests/test_distribute.py: `train` under a strategy, in a fresh
interpreter (logical devices and TF_CONFIG must be set before TensorFlow starts).

    python tests/distributed_run.py CONFIG.json OUT DATA_DIR WEIGHTS.npz
        [--logical-cpus N] [--resume] [--epoch-pause SECONDS]

Writes the trainer's weights after its last epoch (classifier and Feature Smoothing
centres) to WEIGHTS.npz; `--epoch-pause` sleeps after each epoch, so that a test can kill
the process between or inside epochs.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("data_dir")
    parser.add_argument("weights")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epoch-pause", type=float, default=0.0)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    import keras

    from mammo_keras.training import train

    class KeepWeights(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            np.savez(args.weights, **{variable.path: np.asarray(variable)
                                     for variable in self.model.weights})
            time.sleep(args.epoch_pause)

    config = json.loads(open(args.config).read())
    summary = train(config, args.out, data_dir=args.data_dir, verbose=2, resume=args.resume,
                    callbacks=[KeepWeights()])
    print("SUMMARY", json.dumps({key: summary.get(key) for key in
                                 ("worker", "epochs_run", "best_epoch", "metrics")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
