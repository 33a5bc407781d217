#!/usr/bin/env python3
"""Write a tiny LoRA adapter GGUF for a llama-architecture base GGUF, for tests and demos.

    make-lora.py BASE.gguf OUT.gguf [--rank 1] [--magnitude 0.0] [--seed 0] [--layers 4]

The adapter has, for the attention q and v weights of the first `--layers` blocks, the two
tensors llama.cpp expects (`<weight>.lora_a` of shape [n_in, rank] and `<weight>.lora_b` of
shape [rank, n_out], in GGUF's order), filled with seeded random values times `--magnitude`:
0 gives an adapter that changes nothing (a valid no-op), larger values change the model's
answers. Shapes and the architecture are read from the base with `gguf`'s reader, so the
adapter fits any llama-architecture base (SmolLM2-135M by default in mindmesh's tests).

Needs the `gguf` package (pinned in .ci/run: gguf==0.19.0) and numpy (its dependency).
"""

import argparse
import sys

import numpy as np
import gguf


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base")
    ap.add_argument("out")
    ap.add_argument("--rank", type=int, default=1)
    ap.add_argument("--magnitude", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=None, help="adapter.lora.alpha (default: the rank)")
    args = ap.parse_args()

    reader = gguf.GGUFReader(args.base)
    arch = reader.fields["general.architecture"].contents()
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    targets = [
        f"blk.{i}.{w}.weight"
        for i in range(args.layers)
        for w in ("attn_q", "attn_v")
        if f"blk.{i}.{w}.weight" in shapes
    ]
    if not targets:
        sys.exit(f"make-lora: no attention weights found in {args.base}")

    writer = gguf.GGUFWriter(args.out, arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(args.alpha if args.alpha is not None else args.rank))
    rng = np.random.default_rng(args.seed)
    for name in targets:
        # GGUF lists dimensions innermost first: [n_in, n_out]; numpy shapes are the reverse
        n_in, n_out = shapes[name]
        a = (rng.standard_normal((args.rank, n_in)) * args.magnitude).astype(np.float32)
        b = (rng.standard_normal((n_out, args.rank)) * args.magnitude).astype(np.float32)
        writer.add_tensor(f"{name}.lora_a", a)
        writer.add_tensor(f"{name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"make-lora: {args.out}: {len(targets)} weights, rank {args.rank}, magnitude {args.magnitude}")


if __name__ == "__main__":
    main()
