"""`python -m mammo_keras.bench.worker SPEC_JSON`: measure one benchmark row, print it as JSON.

Run by `runner.run_isolated` in a fresh process per row (own peak memory, own backend).
"""

import json
import sys

from mammo_keras.tensorflow_setup import prepare_tensorflow

if __name__ == "__main__":
    prepare_tensorflow()  # the kernels the command line runs with, before TensorFlow loads
    from mammo_keras.bench.runner import run_row

    print(json.dumps(run_row(json.loads(sys.argv[1]))), flush=True)
