#!/usr/bin/env python3
"""Write short, live-like decision scenarios (format mindmesh-scenario/1) for the brain's tests.

A node that has just started hands the brain minutes of history, not hours: 5- to 30-second
samples, a few to thirty minutes long, personas started with the trace (so their first
minute is a warm-up: memory loading, slow first answers), traffic of about a request a second,
noisy latency. Faults are there from the start as often as they begin later: a leak since the
process started, a quarter of requests failing since the start, a replica that has always been
ten times slower than its siblings. The traps are the other half: a noisy but healthy persona,
a warm-up spike, a persona slow because all of its replicas are, a model that loads in steps.

Deterministic: one seed per scenario. Usage:
    scripts/gen-live-scenarios.py [OUT_DIR]   (default crates/mindmesh-brain/tests/scenarios)
"""

import json
import math
import os
import random
import sys

TRANSIENT = [
    "500 Internal Server Error: upstream failed",
    "503 Service Unavailable: model overloaded, retry later",
    "upstream timeout after 3000 ms",
    "502 Bad Gateway from upstream",
]
RATE = ["429 Too Many Requests: rate limit reached for requests", "429 rate_limit_exceeded, retry after 2s"]
PERMANENT = ["401 Unauthorized: invalid api key", "403 Forbidden: api key revoked"]
CLIENT = ["400 context_length_exceeded: requested 9312 tokens, max 8192", "400 invalid_request_error: bad messages"]

HEALTHY = "healthy against its peers and its host; nothing to act on yet"

# a different offset regenerates every scenario with other noise (robustness runs)
SEED_OFFSET = int(os.environ.get("MINDMESH_SCENARIO_SEED", "0"))


def poisson(r, lam):
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, int(round(r.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1


class Scenario:
    def __init__(self, name, description, interval_s, minutes, seed):
        self.name, self.description = name, description
        self.interval = interval_s
        self.n = int(minutes * 60 / interval_s) + 1
        self.rng = random.Random(seed + SEED_OFFSET)
        # a live trace: times from the node's start, first sample one interval in
        self.t = [interval_s * (i + 1) for i in range(self.n)]
        self.nodes, self.personas, self.expect = [], [], {}

    def node(self, nid, cores=4, memory_mb=16384, base_cpu=6.0, base_mem_mb=2500.0):
        self.nodes.append(dict(id=nid, cores=cores, memory_mb=memory_mb, base_cpu=base_cpu, base_mem=base_mem_mb))

    def persona(self, pid, node, accept, why, importance="user_facing", kind="local", model=None, budget=None,
                mem_mb=90.0, load_s=20.0, rate_per_s=1.0, latency_ms=150.0, noise=0.2, warm_spike=0.0,
                err_rate=0.002, cpu=None, uptime_s=0.0, p50=True, mutate=None):
        """`uptime_s`: process age at the first sample (None: unknown, not started with the trace)."""
        r = self.rng
        mem, cpu_s, req, err, l50, l95, l99, queue, restarts, events = ([] for _ in range(10))
        started = 0.0 if uptime_s is not None else -1e9
        for t in self.t:
            age = t - started
            m = mem_mb * (min(1.0, 0.2 + 0.8 * age / load_s) if load_s > 0 else 1.0)
            m *= 1.0 + r.gauss(0, 0.006)
            lam = rate_per_s * self.interval
            q = poisson(r, lam)
            e = sum(1 for _ in range(q) if r.random() < err_rate)
            spike = 1.0 + warm_spike * math.exp(-age / 30.0) if warm_spike else 1.0
            lat = latency_ms * spike * math.exp(r.gauss(0, noise))
            c = cpu if cpu is not None else 2.0 + 0.5 * q * math.exp(r.gauss(0, 0.3))
            mem.append(round(m, 2))
            cpu_s.append(round(c, 2))
            req.append(q)
            err.append(e)
            l50.append(round(lat, 1) if q else None)
            l95.append(round(lat * r.uniform(1.5, 2.2), 1) if q else None)
            l99.append(round(lat * r.uniform(2.3, 3.0), 1) if q else None)
            queue.append(0)
            restarts.append(0)
        s = dict(t=list(self.t), memory_mb=mem, cpu_percent=cpu_s, requests=req, errors=err, latency_p50_ms=l50,
                 latency_p95_ms=l95, latency_p99_ms=l99, queue_depth=queue, restarts=restarts)
        if not p50:
            s.pop("latency_p50_ms")
        p = dict(id=pid, node=node, importance=importance, kind=kind, series=s, events=events)
        if uptime_s is not None:
            p["uptime_s_at_start"] = uptime_s + self.interval
        if model:
            p["model"] = model
        if budget:
            p["budget"] = budget
        if mutate:
            mutate(self, p)
        p["events"].sort(key=lambda ev: ev["t"])
        self.personas.append(p)
        self.expect[pid] = dict(accept=accept, why=why)

    def write(self, out_dir):
        nodes = []
        for nd in self.nodes:
            here = [p for p in self.personas if p["node"] == nd["id"]]
            cpu, mem = [], []
            for i in range(self.n):
                c = nd["base_cpu"] + sum(p["series"]["cpu_percent"][i] for p in here) / nd["cores"]
                mm = nd["base_mem"] + sum(p["series"]["memory_mb"][i] for p in here)
                cpu.append(round(min(100.0, max(0.0, c + self.rng.gauss(0, 1.5))), 1))
                mem.append(round(mm + self.rng.gauss(0, 10)))
            nodes.append(dict(id=nd["id"], cpu_cores=nd["cores"], memory_mb=nd["memory_mb"],
                              series=dict(t=list(self.t), cpu_percent=cpu, memory_used_mb=mem)))
        doc = dict(format="mindmesh-scenario/1", name=self.name, description=self.description,
                   interval_s=self.interval, nodes=nodes, personas=self.personas, expect=self.expect)
        with open(os.path.join(out_dir, self.name + ".json"), "w") as f:
            json.dump(doc, f, separators=(",", ":"))


# --- mutations -----------------------------------------------------------------------------

def leak(mb_per_min, from_s=0.0):
    def mutate(sc, p):
        s = p["series"]
        for i, t in enumerate(sc.t):
            if t > from_s:
                s["memory_mb"][i] = round(s["memory_mb"][i] + mb_per_min * (t - from_s) / 60.0, 2)
    return mutate


def sawtooth(swing, period_s):
    def mutate(sc, p):
        s = p["series"]
        for i, t in enumerate(sc.t):
            s["memory_mb"][i] = round(s["memory_mb"][i] * (1.0 + swing * ((t + 37) % period_s) / period_s), 2)
    return mutate


def steps(at_s, frac):
    """Memory steps up by `frac` at each time of `at_s` (a model loading adapters, a cache)."""
    def mutate(sc, p):
        s = p["series"]
        for i, t in enumerate(sc.t):
            k = sum(1 for a in at_s if t >= a)
            s["memory_mb"][i] = round(s["memory_mb"][i] * (1.0 + frac * k), 2)
    return mutate


def jitter_memory(frac):
    def mutate(sc, p):
        s, r = p["series"], sc.rng
        for i in range(sc.n):
            s["memory_mb"][i] = round(s["memory_mb"][i] * (1.0 + r.gauss(0, frac)), 2)
    return mutate


def latency_factor(fn):
    """Multiply latency at time t by fn(t)."""
    def mutate(sc, p):
        s = p["series"]
        for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            if key not in s:
                continue
            for i, t in enumerate(sc.t):
                if s[key][i] is not None:
                    s[key][i] = round(s[key][i] * fn(t), 1)
    return mutate


def latency_add(ms_per_min):
    """A ramp: latency grows by this much per minute of the process's life."""
    def mutate(sc, p):
        s = p["series"]
        for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            if key not in s:
                continue
            for i, t in enumerate(sc.t):
                if s[key][i] is not None:
                    s[key][i] = round(s[key][i] + ms_per_min * t / 60.0, 1)
    return mutate


def errors(rate, details, from_s=0.0, to_s=1e12):
    def mutate(sc, p):
        s, r = p["series"], sc.rng
        for i, t in enumerate(sc.t):
            if not (from_s <= t < to_s):
                continue
            q = s["requests"][i]
            e = sum(1 for _ in range(q) if r.random() < rate)
            s["errors"][i] = max(s["errors"][i], e)
            for _ in range(min(e, 2)):
                if r.random() < 0.7:
                    p["events"].append(dict(t=t - r.uniform(0, sc.interval - 0.5), kind="error",
                                            detail=r.choice(details)))
    return mutate


def crash_every(period_s, detail="exit status 70"):
    def mutate(sc, p):
        s = p["series"]
        count, last = 0, 0.0
        for i, t in enumerate(sc.t):
            if t - last >= period_s:
                count += 1
                last = t
                p["events"].append(dict(t=t - 1, kind="exit", detail=detail))
            s["restarts"][i] = count
            age = t - last
            s["memory_mb"][i] = round(s["memory_mb"][i] * min(1.0, 0.3 + age / 20.0), 2)
    return mutate


def no_traffic(sc, p):
    s = p["series"]
    for i in range(sc.n):
        s["requests"][i] = 0
        s["errors"][i] = 0
        for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            if key in s:
                s[key][i] = None
        s["cpu_percent"][i] = 0.2


def hang_from(at_s):
    """Nothing completes from `at_s` on; requests pile up in the queue."""
    def mutate(sc, p):
        s = p["series"]
        for i, t in enumerate(sc.t):
            if t < at_s:
                continue
            s["requests"][i] = 0
            s["errors"][i] = 0
            for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
                if key in s:
                    s[key][i] = None
            s["queue_depth"][i] = int((t - at_s) / sc.interval) + 1
            s["cpu_percent"][i] = 0.1
    return mutate


def chain(*fs):
    def mutate(sc, p):
        for f in fs:
            f(sc, p)
    return mutate


# --- scenarios -----------------------------------------------------------------------------

def chats(sc, node, n=2, model="chat-small", prefix="chat", **kw):
    for i in range(n):
        sc.persona(f"{prefix}-{i}", node, ["continue"], HEALTHY, model=model, **kw)


def build(out):
    made = []

    sc = Scenario("l-leak-over-budget-8min", "A summarizer leaks 30 MB/min since it started 8 min ago; it is "
                  "past its 200 MB budget and its hard limit is 512 MB.", 10, 8, 201)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("summarizer", "n1", ["restart"], "steady growth since start, over budget, hard limit in minutes",
               importance="background", model="summarize", budget={"max_memory_mb": 200}, mutate=leak(30))
    made.append(sc)

    sc = Scenario("l-leak-far-under-budget", "Memory has climbed 12 MB/min for 6 min, far under a 4 GB budget.",
                  10, 6, 202)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("indexer", "n1", ["continue", "investigate"], "growing, but far from any limit: watch it",
               importance="background", model="index", mem_mb=300, budget={"max_memory_mb": 4096}, mutate=leak(12))
    made.append(sc)

    sc = Scenario("l-leak-15s-samples", "15-s samples: a persona grows 40 MB/min for 10 min and is past its "
                  "budget.", 15, 10, 203)
    sc.node("n1")
    sc.node("n2")
    chats(sc, "n1", n=3)
    sc.persona("agent", "n2", ["restart"], "over budget and still climbing", model="agent-x", mem_mb=150,
               budget={"max_memory_mb": 400}, mutate=leak(40))
    made.append(sc)

    sc = Scenario("l-flaky-mixed-from-start", "An API wrapper fails 22% of its requests since it started: rate "
                  "limits, server errors and timeouts; nothing else fails.", 10, 9, 204)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("flaky-api", "n1", ["throttle", "restart"], "a fifth of requests fail since the start, a third of "
               "them rate limits", kind="api", model="remote-x", mutate=errors(0.22, RATE + TRANSIENT))
    made.append(sc)

    sc = Scenario("l-own-5xx-from-start", "One persona has failed 15% of its requests with 5xx since it started; "
                  "its same-kind peers do not fail.", 10, 10, 205)
    sc.node("n1")
    sc.node("n2")
    for i in range(3):
        sc.persona(f"api-{i}", ["n1", "n2"][i % 2], ["continue"], HEALTHY, kind="api",
                   model=f"remote-{i}", latency_ms=600)
    sc.persona("writer", "n2", ["restart"], "its own server errors since the start; peers are fine", kind="api",
               model="remote-w", latency_ms=600, mutate=errors(0.15, TRANSIENT))
    made.append(sc)

    sc = Scenario("l-bad-start-quarter-failing", "A persona has failed a quarter of its requests since it started, "
                  "20 minutes ago, with timeouts and 5xx; the mesh does not.", 10, 20, 206)
    sc.node("n1")
    chats(sc, "n1", n=3)
    sc.persona("coder", "n1", ["restart"], "consistently failing is not healthy", model="coder-m",
               mutate=errors(0.25, TRANSIENT))
    made.append(sc)

    sc = Scenario("l-shared-upstream-errors", "Three replicas of one API model all fail ~12% with 5xx since they "
                  "started: the upstream is shared.", 10, 10, 207)
    sc.node("n1")
    sc.node("n2")
    for i in range(3):
        sc.persona(f"proxy-{i}", ["n1", "n2"][i % 2], ["continue", "investigate"], "every replica fails alike",
                   kind="api", model="gpt-proxy", latency_ms=700, mutate=errors(0.12, TRANSIENT))
    chats(sc, "n1")
    made.append(sc)

    sc = Scenario("l-slow-replica-20min", "One of three replicas of a model has been 8x slower than its siblings "
                  "for the whole 20 minutes since they started.", 10, 20, 208)
    sc.node("n1")
    sc.node("n2")
    for i in range(3):
        slow = i == 1
        sc.persona(f"llama-{i}", ["n1", "n2"][i % 2], ["restart"] if slow else ["continue"],
                   "8x slower than its replicas for 20 min" if slow else HEALTHY, model="llama-8b",
                   latency_ms=180, mutate=latency_factor(lambda t: 8.0) if slow else None)
    made.append(sc)

    sc = Scenario("l-slow-replica-7min", "One of two replicas has been 10x slower than the other for the 7 "
                  "minutes since they started.", 10, 7, 209)
    sc.node("n1")
    for i in range(2):
        slow = i == 0
        sc.persona(f"qwen-{i}", "n1", ["investigate", "restart"] if slow else ["continue"],
                   "10x slower than its replica since the start" if slow else HEALTHY, model="qwen-7b",
                   latency_ms=140, mutate=latency_factor(lambda t: 10.0) if slow else None)
    chats(sc, "n1", model="other-chat")
    made.append(sc)

    sc = Scenario("l-latency-ramp-vs-peer", "A persona's latency has grown 200 ms each minute since it started "
                  "9 minutes ago; its same-model peers stay at ~150 ms.", 10, 9, 210)
    sc.node("n1")
    chats(sc, "n1", n=2, model="chat")
    sc.persona("translator", "n1", ["investigate", "restart"], "slowing steadily against its peers",
               model="chat", mutate=latency_add(200))
    made.append(sc)

    sc = Scenario("l-all-slow-shared", "Every persona in the mesh got 3x slower 5 minutes ago: a shared cause.",
                  10, 14, 211)
    sc.node("n1")
    sc.node("n2")
    for i in range(5):
        sc.persona(f"svc-{i}", ["n1", "n2"][i % 2], ["continue", "investigate"], "slow like everyone else",
                   kind="api", model=f"m-{i}", latency_ms=400,
                   mutate=latency_factor(lambda t: 3.0 if t > 9 * 60 else 1.0))
    made.append(sc)

    sc = Scenario("l-slow-with-its-replicas", "A persona is 4x slower than in its first minutes, and so are its "
                  "replicas: slow because all of them are.", 10, 15, 212)
    sc.node("n1")
    sc.node("n2")
    for i in range(3):
        sc.persona(f"mistral-{i}", ["n1", "n2"][i % 2], ["continue", "investigate"], "slow like its replicas",
                   model="mistral-7b", latency_ms=300, mutate=latency_factor(lambda t: 4.0 if t > 6 * 60 else 1.0))
    chats(sc, "n1", model="small-chat")
    made.append(sc)

    sc = Scenario("l-warmup-spike", "Personas just started: the first answers were 6x slower while caches "
                  "warmed and memory loaded in the first minute. Nothing is wrong.", 10, 5, 213)
    sc.node("n1")
    for i in range(3):
        sc.persona(f"tutor-{i}", "n1", ["continue"], "a warm-up spike is not a slowdown", model="tutor",
                   warm_spike=5.0, load_s=60, mem_mb=400)
    sc.persona("helper", "n1", ["continue"], "warm-up only", model="helper", warm_spike=8.0, load_s=45, mem_mb=250)
    made.append(sc)

    sc = Scenario("l-noisy-but-healthy", "A persona with very noisy latency, jittery memory and the odd error; "
                  "its median is like its replicas'. Noise is not a fault.", 10, 12, 214)
    sc.node("n1")
    sc.node("n2")
    sc.persona("noisy", "n1", ["continue"], "noisy, not degraded", model="chat-m", noise=0.6, err_rate=0.012,
               mem_mb=250, mutate=jitter_memory(0.05))
    for i in range(2):
        sc.persona(f"calm-{i}", "n2", ["continue"], HEALTHY, model="chat-m", noise=0.15, mem_mb=250)
    made.append(sc)

    sc = Scenario("l-crash-loop", "A persona exits every 60 s and is restarted each time: five restarts in five "
                  "minutes.", 10, 6, 215)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("crashy", "n1", ["kill"], "a crash loop", importance="background", model="batch",
               mutate=crash_every(60))
    made.append(sc)

    sc = Scenario("l-idle-background-since-start", "A background persona has had no request in the 14 minutes "
                  "since it started; the others are busy.", 10, 14, 216)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("batch-summarizer", "n1", ["hibernate", "continue"], "background, never used since it started",
               importance="background", model="batch-s", mutate=no_traffic)
    sc.persona("desk", "n1", ["continue", "hibernate"], "user-facing, idle; the host has room",
               model="desk", mutate=no_traffic)
    made.append(sc)

    sc = Scenario("l-two-minutes-in", "Everything started two minutes ago and is healthy.", 10, 2, 217)
    sc.node("n1")
    chats(sc, "n1", n=3)
    sc.persona("loader", "n1", ["continue"], HEALTHY, model="loader", load_s=60, mem_mb=600, warm_spike=3.0)
    made.append(sc)

    sc = Scenario("l-client-errors-from-start", "A persona's callers send oversized prompts: 10% of requests fail "
                  "with 400 context_length since the start.", 10, 10, 218)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("coder", "n1", ["continue", "investigate"], "client errors: a restart cannot change them",
               model="coder", mutate=errors(0.10, CLIENT))
    made.append(sc)

    sc = Scenario("l-revoked-key-from-start", "Every request of one persona fails with 401 since it started 4 min "
                  "ago.", 10, 4, 219)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("gpt-wrapper", "n1", ["kill"], "permanent auth failures", kind="api", model="gpt",
               mutate=errors(0.98, PERMANENT))
    made.append(sc)

    sc = Scenario("l-model-loads-in-steps", "A local model loaded its weights and two adapters in steps over the "
                  "first 3 minutes, then held flat for 7.", 10, 10, 220)
    sc.node("n1", memory_mb=32768)
    chats(sc, "n1")
    sc.persona("local-llm", "n1", ["continue"], "loading in steps then flat is not a leak", kind="local",
               model="llm-7b", mem_mb=3000, load_s=40, budget={"max_memory_mb": 6144}, latency_ms=900,
               mutate=steps([70, 130, 180], 0.12))
    made.append(sc)

    sc = Scenario("l-sawtooth-under-budget", "A GC sawtooth (+35% every 4 min) under a generous budget, 12 min.",
                  10, 12, 221)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("gc-heavy", "n1", ["continue"], "a sawtooth is not a leak", model="gc", mem_mb=300,
               budget={"max_memory_mb": 1024}, mutate=sawtooth(0.35, 240))
    made.append(sc)

    sc = Scenario("l-leak-no-p50", "The node reports p95 only. A persona leaks 25 MB/min since start and is over "
                  "its 256 MB budget; another is slow against its replica.", 10, 11, 222)
    sc.node("n1")
    sc.persona("leaky", "n1", ["restart"], "over budget and climbing", importance="background", model="leak-m",
               budget={"max_memory_mb": 256}, p50=False, mutate=leak(25))
    sc.persona("fast-0", "n1", ["continue"], HEALTHY, model="pair", p50=False)
    sc.persona("slow-0", "n1", ["investigate", "restart"], "6x slower than its replica", model="pair", p50=False,
               mutate=latency_factor(lambda t: 6.0))
    made.append(sc)

    sc = Scenario("l-error-clump-at-start", "A persona failed a burst of requests in its first minute while its "
                  "upstream connection warmed, then none for 9 minutes.", 10, 10, 223)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("connector", "n1", ["continue"], "a start-up clump, long over", kind="api", model="conn",
               mutate=errors(0.6, TRANSIENT, to_s=60))
    made.append(sc)

    sc = Scenario("l-rate-limited-busy", "A busy background persona gets 429s on 15% of its requests since it "
                  "started 12 min ago.", 10, 12, 224)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("bulk", "n1", ["throttle", "continue", "investigate"], "rate limits: send less", kind="api",
               importance="background", model="bulk", rate_per_s=3.0, mutate=errors(0.15, RATE))
    made.append(sc)

    sc = Scenario("l-hung-after-6min", "A persona answered a request a second for 6 minutes, then nothing has "
                  "completed for 4 minutes while its queue grows.", 10, 10, 225)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("planner", "n1", ["restart"], "hung: nothing completes, the queue grows", model="planner",
               mutate=hang_from(6 * 60))
    made.append(sc)

    sc = Scenario("l-leak-60s-samples-25min", "One-minute samples: a persona has grown 8 MB/min for the 25 minutes "
                  "since it started and is past its budget.", 60, 25, 226)
    sc.node("n1")
    sc.node("n2")
    chats(sc, "n1", n=3)
    sc.persona("embedder", "n2", ["restart"], "steady growth past its budget", model="embed", mem_mb=200,
               budget={"max_memory_mb": 320}, mutate=leak(8))
    made.append(sc)

    sc = Scenario("l-over-budget-flat", "A local model has held 2.6 GB since it loaded, over its 2 GB budget; it "
                  "does not grow.", 10, 12, 227)
    sc.node("n1", memory_mb=32768)
    chats(sc, "n1")
    sc.persona("big-model", "n1", ["investigate", "continue"], "over budget but flat: an operator sets budgets",
               model="big", mem_mb=2600, load_s=50, budget={"max_memory_mb": 2048}, latency_ms=800)
    made.append(sc)

    sc = Scenario("l-leak-under-limit-soon", "No budget, but a 1 GB hard limit: memory climbs 50 MB/min since "
                  "start and is at 700 MB.", 10, 11, 228)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("scraper", "n1", ["restart"], "the hard limit is minutes away", importance="background",
               model="scrape", mem_mb=150, mutate=chain(leak(50), lambda sc, p: p.update(limits={"memory_max_mb": 1024})))
    made.append(sc)

    sc = Scenario("l-cpu-hog-live", "A background persona has burned 3.5 of 4 cores since it started 9 minutes "
                  "ago; the host is saturated and alone in the mesh.", 10, 9, 229)
    sc.node("n1", cores=4, base_cpu=4.0)
    chats(sc, "n1")
    sc.persona("cruncher", "n1", ["throttle", "migrate"], "a background hog on a saturated host", model="crunch",
               importance="background", cpu=350.0)
    made.append(sc)

    # idle is no excuse for memory: each idle persona is judged on its memory first. The idle
    # background leaker is hibernated (frees all of it; a restart would leak again for no one),
    # the user-facing one stays warm but fresh (restart), the one growing far from any limit
    # is watched rather than "kept warm" and forgotten.
    sc = Scenario("l-idle-leakers", "Three personas have had no request for 14 minutes since they started; two "
                  "leak 25 MB/min past their 256 MB budget (one background, one user-facing), one grows 4 MB/min "
                  "far under its budget.", 10, 14, 230)
    sc.node("n1")
    # enough busy peers that two disruptions at once stay within the share cap
    chats(sc, "n1", n=4)
    sc.persona("night-batch", "n1", ["hibernate"], "idle and leaking past its budget: hibernating frees it all, "
               "a restart would bring it back to leak for nobody", importance="background", model="batch-n",
               budget={"max_memory_mb": 256}, mutate=chain(no_traffic, leak(25)))
    sc.persona("desk", "n1", ["restart"], "user-facing, idle, leaking past its budget: stays warm, but fresh",
               model="desk", budget={"max_memory_mb": 256}, mutate=chain(no_traffic, leak(25)))
    sc.persona("helpdesk", "n1", ["investigate"], "idle, growing far under its budget: watch it, do not forget it",
               model="helpdesk", budget={"max_memory_mb": 4096}, mutate=chain(no_traffic, leak(4)))
    made.append(sc)

    for s in made:
        s.write(out)
    return len(made)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "crates", "mindmesh-brain", "tests", "scenarios")
    os.makedirs(out, exist_ok=True)
    print(f"wrote {build(out)} scenarios to {out}")
