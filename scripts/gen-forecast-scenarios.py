#!/usr/bin/env python3
"""Write labelled memory-forecast scenarios (format mindmesh-scenario/1, `f-*`) for the brain's tests.

The seed's predictive fact "time until memory reaches its budget or limit", forecast from the
fitted trend, and its traps:
  - a persona growing steadily that reaches its budget in about 13 minutes: watched
    (investigate), not restarted while it is still under it
  - one that reaches its hard limit in about 50 minutes (no budget): watched; under 30 minutes
    the existing policy restarts it (`l-leak-under-limit-soon`)
  - traps: a noisy but flat series sitting just under its budget (its fitted slope is noise:
    no forecast, nothing to do), and a GC sawtooth whose peaks touch its budget

Built on scripts/gen-live-scenarios.py's generator; deterministic, one seed per scenario.
Usage: scripts/gen-forecast-scenarios.py [OUT_DIR]   (default crates/mindmesh-brain/tests/scenarios)
"""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("live", os.path.join(HERE, "gen-live-scenarios.py"))
live = importlib.util.module_from_spec(spec)
spec.loader.exec_module(live)
Scenario, chain, leak, sawtooth, jitter_memory, chats = (live.Scenario, live.chain, live.leak, live.sawtooth,
                                                          live.jitter_memory, live.chats)
HEALTHY = live.HEALTHY


def limit(mb):
    def mutate(sc, p):
        p["limits"] = {"memory_max_mb": mb}
    return mutate


def build(out):
    made = []

    sc = Scenario("f-budget-in-13-min", "A background indexer has grown 6 MB/min since it started 20 minutes ago "
                  "and is about 75 MB under its 1100 MB budget: it gets there in about 13 minutes.", 10, 20, 601)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("indexer", "n1", ["investigate"], "its budget is 13 minutes away at its fitted growth: watch it "
               "(the forecast anomaly); under its budget, a restart is not yet due", importance="background",
               model="index", mem_mb=900, budget={"max_memory_mb": 1100}, mutate=leak(6))
    made.append(sc)

    sc = Scenario("f-limit-in-50-min", "No budget, a 1 GB hard limit: memory has climbed 8 MB/min for 15 minutes "
                  "and is at about 640 MB, so the limit is some 50 minutes away.", 10, 15, 602)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("scraper", "n1", ["investigate"], "the hard limit is within the hour but not minutes away: watch it",
               importance="background", model="scrape", mem_mb=520, mutate=chain(leak(8), limit(1024)))
    made.append(sc)

    sc = Scenario("f-trap-noisy-flat-near-budget", "A persona's memory jitters around 950 MB, 5 % under its 1000 MB "
                  "budget, for 20 minutes: noisy but flat. No forecast: the slope of noise has no horizon.",
                  10, 20, 603)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("noisy", "n1", ["continue"], "flat under its budget: nothing reaches anything", model="noisy",
               mem_mb=950, budget={"max_memory_mb": 1000}, mutate=jitter_memory(0.02))
    made.append(sc)

    sc = Scenario("f-trap-sawtooth-to-budget", "A GC sawtooth whose peaks come within 3 % of its 1000 MB budget "
                  "(+30 % every 4 min from 750 MB), for 20 minutes: each rise is collected, none is a trend.",
                  10, 20, 604)
    sc.node("n1")
    chats(sc, "n1")
    sc.persona("gc-heavy", "n1", ["continue"], "a sawtooth under its budget is not growth", model="gc",
               mem_mb=750, budget={"max_memory_mb": 1000}, mutate=sawtooth(0.30, 240))
    made.append(sc)

    for s in made:
        s.write(out)
    return len(made)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "crates", "mindmesh-brain", "tests", "scenarios")
    os.makedirs(out, exist_ok=True)
    print(f"wrote {build(out)} scenarios to {out}")
