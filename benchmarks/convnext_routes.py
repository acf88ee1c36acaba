"""ConvNeXt-Tiny training on the CPU: each route to speed, against the PyTorch peer.

Issue 7's gap: keras.applications ConvNeXt-Tiny trained at ~0.8 img/s on TensorFlow against
~4 img/s for PyTorch. Every route is one `mammo-keras bench` row (own process, median of
`--repeats` runs of `--steps` train steps, 224 px, batch 16, random images, 3 classes):

  keras.applications route, TF defaults | + oneDNN | mammo-keras (ChannelwiseConv2D), oneDNN
  off | mammo-keras default (ChannelwiseConv2D + oneDNN) | + XLA (jit_compile=True) | + one
  inter-op thread | Keras on the PyTorch backend | Keras on JAX | plain PyTorch; and the
  matmul ceiling.

    python benchmarks/convnext_routes.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mammo_keras.atomic import write_json_atomically, write_text_atomically
from mammo_keras.bench import markdown_table, run
from mammo_keras.bench.suite import CEILING, ceiling_spec, print_progress
from mammo_keras.provenance import provenance

ONEDNN_OFF = {"TF_ENABLE_ONEDNN_OPTS": "0"}
ONEDNN_ON = {"TF_ENABLE_ONEDNN_OPTS": "1"}


def routes() -> list[tuple[str, dict]]:
    """(route, spec without size / batch / steps / repeats)."""
    ours = {"model": "convnext_tiny", "head": "gap", "mode": "train", "backend": "tensorflow"}
    naive = {**ours, "model": "keras.applications:convnext_tiny"}
    return [
        ("keras.applications + default fit, TF defaults (oneDNN off)", {**naive, "env": ONEDNN_OFF}),
        ("keras.applications + oneDNN", {**naive, "env": ONEDNN_ON}),
        ("mammo-keras: ChannelwiseConv2D, oneDNN off", {**ours, "env": ONEDNN_OFF}),
        ("mammo-keras default: ChannelwiseConv2D + oneDNN", {**ours, "env": ONEDNN_ON}),
        ("mammo-keras default + XLA (jit_compile=True)", {**ours, "env": ONEDNN_ON,
                                                          "jit_compile": True}),
        ("mammo-keras default + TF_NUM_INTEROP_THREADS=1", {
            **ours, "env": {**ONEDNN_ON, "TF_NUM_INTEROP_THREADS": "1"}}),
        ("mammo-keras on Keras' PyTorch backend (train --backend torch)", {**ours,
                                                                         "backend": "torch"}),
        ("mammo-keras on Keras' JAX backend (train --backend jax)", {**ours, "backend": "jax"}),
        ("plain PyTorch (the peer)", {**ours, "model": "pytorch:convnext_tiny",
                                      "backend": "pytorch"}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for convnext_routes.{json,md}")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    specs = [{"image_size": args.image_size, "batch_size": args.batch_size, **spec,
              "steps": args.steps, "repeats": args.repeats, "route": route}
             for route, spec in routes()]
    ceiling = {**ceiling_spec(args.repeats), "route": "dense matmul ceiling"}
    rows = run(specs + [ceiling], progress=print_progress)
    facts = provenance()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "convnext_routes.json", {**facts, "rows": rows})
    lines = [f"# ConvNeXt-Tiny training routes on the CPU ({args.image_size} px, batch "
             f"{args.batch_size})", "",
             f"Command: `{facts['command']}`, commit {facts['commit']}, {facts['hardware']}.",
             f"Median of {args.repeats} runs of {args.steps} train steps, each route in its own "
             "process. `vs PyTorch`: throughput over the plain PyTorch peer of this run.", "",
             "| route | img/s | vs PyTorch | vs keras.applications | % of matmul | peak MB | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        if row["model"] == CEILING:
            continue
        cells = [f"{row[key]:.2f}" if isinstance(row.get(key), float) else "-"
                 for key in ("img_per_s", "vs_pytorch", "vs_keras_applications")]
        percent = row.get("pct_of_ceiling")
        memory = row.get("peak_memory_mb")
        lines.append(f"| {row['route']} | {' | '.join(cells)} | "
                     f"{'-' if percent is None else f'{percent:.0f}'} | "
                     f"{'-' if memory is None else f'{memory:.0f}'} | "
                     f"{row.get('skipped') or row.get('error') or ''} |")
    ceiling = next(row for row in rows if row["model"] == CEILING)
    lines += ["", f"Ceiling: dense float32 matmul {ceiling.get('gflops', 0):.1f} GFLOP/s "
              "(TensorFlow, oneDNN on). Full rows: convnext_routes.json; same table format as "
              "`mammo-keras bench`:", "", markdown_table(rows)]
    write_text_atomically(out / "convnext_routes.md", "\n".join(lines) + "\n")
    print(json.dumps({"written": str(out / "convnext_routes.md")}))


if __name__ == "__main__":
    main()
