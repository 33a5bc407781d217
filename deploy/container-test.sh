#!/usr/bin/env bash
# The 3-node mesh of deploy/compose.yaml in containers, end to end: build the image from
# BINARY, bring the mesh up, check that every node's `status` shows three members and one
# leader and that every demo persona runs (in the container of the node it is placed on),
# `docker kill` the leader's container, wait for a new leader among the other two, and tear
# everything down (always, also on failure or interruption). Prints its timings.
#
# usage: deploy/container-test.sh BINARY       e.g. target/debug/mindmesh
# Where no Docker engine answers it prints "skipped: no Docker engine" and exits 0.
# tests/deploy.rs runs it with the debug binary cargo builds.
set -euo pipefail
# shellcheck source=deploy/container-harness.sh
source "$(dirname "$0")/container-harness.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 BINARY" >&2; exit 2; }
harness_init kill-leader "$1"
bring_up

old=$LEADER
survivors=()
for n in "${NODES[@]}"; do [[ $n == "$old" ]] || survivors+=("$n"); done
# the survivors' own personas, with the pid each node reports for them: a leader change must
# not disturb them (their nodes keep a quorum throughout)
own_pids() { status "$1" | jq -r --arg n "$1" '.personas[] | select(.node == $n) | "\(.name) \(.pid)"'; }
before=""
for n in "${survivors[@]}"; do before+=$(own_pids "$n")$'\n'; done
victim=$(container_of "$old")
say "killing the leader $old (container ${victim:0:12}) with SIGKILL"
t_kill=$(now_ms)
docker kill "$victim" >/dev/null
t_killed=$(now_ms)

# both survivors must name the same new leader, one of them, which they see as leading
deadline=$((t_kill + 30000))
while true; do
    new=""
    agreed=1
    for n in "${survivors[@]}"; do
        l=$(status "$n" | jq -r --arg old "$old" '
            .mesh as $m
            | if $m.leader != null and $m.leader != $old
                 and ([$m.nodes[] | select(.role == "leader")] | map(.name)) == [$m.leader]
              then $m.leader else empty end') || l=""
        if [[ -z $l || (-n $new && $l != "$new") ]]; then agreed=0; break; fi
        new=$l
    done
    if ((agreed)) && [[ -n $new ]]; then break; fi
    (($(now_ms) < deadline)) || fail "no new leader among ${survivors[*]} within 30 s of killing $old"
    sleep 0.1
done
failover_ms=$(($(now_ms) - t_kill))
[[ " ${survivors[*]} " == *" $new "* ]] || fail "new leader $new is not one of the survivors ${survivors[*]}"
say "new leader $new after $(secs "$failover_ms") s (docker kill itself took $((t_killed - t_kill)) ms)"

# the survivors still know all three members (the dead one included, no longer leading)
s=$(status "$new")
jq -e --arg old "$old" '(.mesh.nodes | length) == 3 and ([.mesh.nodes[] | select(.name == $old and .role != "leader")] | length) == 1' \
    <<<"$s" >/dev/null || fail "the new leader's view of the members is wrong: $(jq -c '.mesh.nodes' <<<"$s")"

# The survivors' own personas are the same processes as before the kill, also a lease period
# after the new leader: those nodes kept a quorum, so nothing there had reason to stop (a node
# that fences or restarts its personas because the leader changed shows up here). The dead
# leader's personas may meanwhile fail over to them: those are not compared.
sleep 1.5
after=""
for n in "${survivors[@]}"; do after+=$(own_pids "$n")$'\n'; done
changed=""
while read -r p pid; do
    [[ -n $p ]] || continue
    grep -qx "$p $pid" <<<"$after" || changed+="$p (pid $pid, now: $(grep "^$p " <<<"$after" | cut -d' ' -f2 || true)) "
done <<<"$before"
if [[ -n $changed ]]; then
    for n in "${survivors[@]}"; do
        docker logs "$(container_of "$n")" 2>&1 | grep -i -e fenc -e lease | tail -4 | cut -c1-250 | sed "s/^/    $n: /"
    done
    fail "the leader change restarted or stopped personas on nodes that kept a quorum: $changed"
fi
kept=$(grep -c . <<<"$before")
say "the survivors' $kept personas kept running through the leader change (same pids)"

# each of them runs in exactly one container, its node's
s=$(status "$new")
kept_json=$(jq --arg names "$(cut -d' ' -f1 <<<"$before")" '($names | split("\n") | map(select(. != ""))) as $k
    | .personas |= map(select(.name as $n | $k | index($n)))' <<<"$s")
assert_placement "$kept_json" "${survivors[@]}"
moved=$(jq -r --arg old "$old" '[.personas[] | select(.node != null and .node != $old)] | length' <<<"$s")
if ((moved > kept)); then
    say "meanwhile $((moved - kept)) of $old's personas were placed on the survivors: $(jq -r --arg old "$old" --arg names "$(cut -d' ' -f1 <<<"$before")" \
        '[.personas[] | select(.node != $old and (.name as $n | $names | split("\n") | index($n) | not)) | "\(.name) on \(.node) (\(.phase))"] | join(", ")' <<<"$s")"
fi

say "container test passed"
echo "timing: mesh_up_s=$(secs "$UP_MS") new_leader_after_kill_s=$(secs "$failover_ms")"
