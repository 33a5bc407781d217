#!/usr/bin/env python3
"""Write labelled budget scenarios (format mindmesh-scenario/1, `b-*`) for the brain's tests.

The seed's allocation examples and their traps, each with `expect.<persona>.budget`: the
acceptable directions (up, down, same) of each budget field the decision moves.
  - a user-facing chat in a burst: priority up, timeout up (within `budget_max`)
  - idle 15 minutes: hibernate (background), priority down
  - a host under memory pressure: the big background persona hibernated, the other
    background work throttled (0.5x); user-facing untouched
  - a host with saturated CPU: background work to 0.25x, largest first; the system persona
    never starved
  - traps: a burst that is a retry storm (no priority for it); memory pressure caused by a
    user-facing persona (the background personas that hold nothing are not throttled for it)

Built on scripts/gen-live-scenarios.py's generator; deterministic, one seed per scenario.
Usage: scripts/gen-budget-scenarios.py [OUT_DIR]   (default crates/mindmesh-brain/tests/scenarios)
"""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("live", os.path.join(HERE, "gen-live-scenarios.py"))
live = importlib.util.module_from_spec(spec)
spec.loader.exec_module(live)
Scenario, chain, leak, no_traffic, errors = live.Scenario, live.chain, live.leak, live.no_traffic, live.errors
TRANSIENT = live.TRANSIENT

SAME = ["same"]
CHAT_BUDGET = {"inference_queue_priority": 50, "max_response_time_ms": 30000}
# the operator lets a chat go up to the seed's "priority 90, timeout 45 s"
CHAT_MAX = {"inference_queue_priority": 90, "max_response_time_ms": 45000}


def traffic(factor, from_s):
    """Requests (and CPU) times `factor` from `from_s` on."""
    def mutate(sc, p):
        s = p["series"]
        for i, t in enumerate(sc.t):
            if t >= from_s:
                s["requests"][i] = int(round(s["requests"][i] * factor))
                s["cpu_percent"][i] = round(s["cpu_percent"][i] * factor, 2)
    return mutate


def quiet_from(from_s):
    """No request from `from_s` on (idle since)."""
    def mutate(sc, p):
        s = p["series"]
        for i, t in enumerate(sc.t):
            if t >= from_s:
                s["requests"][i] = 0
                s["errors"][i] = 0
                for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
                    if key in s:
                        s[key][i] = None
                s["cpu_percent"][i] = 0.2
    return mutate


def budgeted(sc, pid, node, accept, why, budget_expect=None, budget=None, budget_max=None, **kw):
    sc.persona(pid, node, accept, why, budget=budget or dict(CHAT_BUDGET), **kw)
    p = sc.personas[-1]
    if budget_max:
        p["budget_max"] = budget_max
    if budget_expect:
        sc.expect[pid]["budget"] = budget_expect


def build(out):
    made = []
    minutes, interval = 120, 60
    end = minutes * 60

    sc = Scenario("b-user-chat-burst", "A user-facing chat serves three times its usual traffic for the last "
                  "20 minutes, without errors; its operator lets it go up to priority 90 and 45 s.",
                  interval, minutes, 301)
    sc.node("n1", cores=8, memory_mb=32768)
    budgeted(sc, "chat-0", "n1", ["continue", "budget"], "a user-facing burst: more priority and time",
             {"inference_queue_priority": ["up"], "max_response_time_ms": ["up"]}, budget_max=CHAT_MAX,
             model="chat", mutate=traffic(3.0, end - 20 * 60))
    budgeted(sc, "chat-1", "n1", ["continue"], "steady: nothing moves", {"inference_queue_priority": SAME},
             budget_max=CHAT_MAX, model="chat")
    budgeted(sc, "notes", "n1", ["continue"], "steady background", {"throttle_multiplier": SAME},
             importance="background", model="notes")
    made.append(sc)

    sc = Scenario("b-idle-10min", "A background summarizer and a user-facing desk have had no request for 15 "
                  "minutes after an hour and a half of steady use.", interval, minutes, 302)
    sc.node("n1", cores=8, memory_mb=32768)
    budgeted(sc, "summarizer", "n1", ["hibernate"], "idle background: hibernate, priority down",
             {"inference_queue_priority": ["down"]}, importance="background", model="summ",
             mutate=quiet_from(end - 15 * 60))
    budgeted(sc, "desk", "n1", ["continue", "budget", "hibernate"], "idle user-facing: keep warm, give priority back",
             {"inference_queue_priority": ["down"]}, model="desk", mutate=quiet_from(end - 15 * 60))
    budgeted(sc, "chat-0", "n1", ["continue"], "busy", {"inference_queue_priority": SAME}, model="chat")
    budgeted(sc, "chat-1", "n1", ["continue"], "busy", {"inference_queue_priority": SAME}, model="chat")
    made.append(sc)

    sc = Scenario("b-memory-pressure-throttle", "A 16 GB host at about 89% memory: a 3 GB background embedder, a "
                  "700 MB background tagger, two user-facing chats.", interval, minutes, 303)
    sc.node("n1", cores=8, memory_mb=16384, base_mem_mb=10200)
    budgeted(sc, "embedder", "n1", ["hibernate"], "the biggest background persona on a host short of memory",
             importance="background", model="embed", mem_mb=3000)
    budgeted(sc, "tagger", "n1", ["continue", "budget", "throttle"], "background work slowed while memory is short",
             {"throttle_multiplier": ["down"]}, importance="background", model="tag", mem_mb=700)
    for i in range(2):
        budgeted(sc, f"chat-{i}", "n1", ["continue"], "user-facing keeps its budget",
                 {"throttle_multiplier": SAME, "inference_queue_priority": SAME}, model="chat", mem_mb=400)
    made.append(sc)

    sc = Scenario("b-system-under-load", "A 4-core host at about 95% CPU: three background batch personas use "
                  "60-90% CPU each, none a hog alone; a system router and two chats.", interval, minutes, 304)
    sc.node("n1", cores=4, memory_mb=32768, base_cpu=18.0)
    for i, cpu in enumerate([90.0, 75.0, 60.0]):
        budgeted(sc, f"batch-{i}", "n1", ["continue", "budget", "throttle", "investigate"],
                 "background work to 0.25x until the host is clear, largest first",
                 {"throttle_multiplier": ["down"] if i == 0 else ["down", "same"]}, importance="background",
                 model=f"batch-{i}", cpu=cpu)
    budgeted(sc, "router", "n1", ["continue", "investigate"], "the system class is never starved",
             {"throttle_multiplier": ["same", "up"], "inference_queue_priority": ["same", "up"]},
             importance="system", model="router", cpu=20.0)
    for i in range(2):
        budgeted(sc, f"chat-{i}", "n1", ["continue", "investigate"], "user-facing is not slowed first",
                 {"throttle_multiplier": SAME}, model="chat", cpu=25.0)
    made.append(sc)

    sc = Scenario("b-trap-retry-storm", "A user-facing chat's traffic tripled for 40 minutes, but 45% of it "
                  "fails with 503s: callers retrying failures, not users to serve faster.", interval, minutes, 305)
    sc.node("n1", cores=8, memory_mb=32768)
    budgeted(sc, "chat-0", "n1", ["restart", "investigate"], "a retry storm is no burst: no priority for it",
             {"inference_queue_priority": ["same", "down"], "max_response_time_ms": ["same", "down"]},
             budget_max=CHAT_MAX, model="chat",
             mutate=chain(traffic(3.0, end - 40 * 60), errors(0.45, TRANSIENT[:2], from_s=end - 40 * 60)))
    for i in (1, 2, 3):
        budgeted(sc, f"chat-{i}", "n1", ["continue"], "steady", {"inference_queue_priority": SAME},
                 budget_max=CHAT_MAX, model="chat")
    made.append(sc)

    sc = Scenario("b-trap-pressure-from-user-facing", "A 16 GB host reaches 90% memory because a user-facing "
                  "persona grows 12 MB/min; two small background personas hold 150 MB each and cause "
                  "nothing.", interval, minutes, 306)
    sc.node("n1", cores=8, memory_mb=16384, base_mem_mb=12000)
    budgeted(sc, "assistant", "n1", ["restart", "investigate"], "its own growth is the pressure: acted on as a "
             "memory problem, not throttled as if it were background",
             {"throttle_multiplier": SAME, "inference_queue_priority": ["same", "up"]}, model="assist",
             mem_mb=400, budget={"inference_queue_priority": 50, "max_memory_mb": 4096}, mutate=leak(12))
    for i in range(2):
        budgeted(sc, f"bg-{i}", "n1", ["continue"], "holds a sliver and grows not: nothing to take from it",
                 {"throttle_multiplier": SAME}, importance="background", model=f"bg-{i}", mem_mb=150)
    budgeted(sc, "chat-0", "n1", ["continue"], "steady", {"throttle_multiplier": SAME}, model="chat")
    made.append(sc)

    for s in made:
        s.write(out)
    return len(made)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "crates", "mindmesh-brain", "tests",
                                                              "scenarios")
    os.makedirs(out, exist_ok=True)
    print(f"wrote {build(out)} scenarios to {out}")
