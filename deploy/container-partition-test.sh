#!/usr/bin/env bash
# A real network partition of the 3-node compose mesh (deploy/compose.yaml), issue 6's
# failover with fencing, end to end:
#   1. the mesh comes up (3 nodes, one leader, 6 demo personas running where they are placed);
#   2. a node that is not the leader and owns personas is cut off: `docker network disconnect`;
#   3. within the deadline (10 s, PARTITION_DEADLINE_S) its own API shows its personas no
#      longer running and their processes are gone from its container (it lost its lease and
#      fenced itself), and the majority's `status` shows them running on one of its nodes, with
#      the processes in that node's container; at no sample does a persona run on both sides;
#   4. the node is connected again (`docker network connect`, same DNS alias): it rejoins (it
#      follows the majority's leader, which sees it healthy) and does not start the failed-over
#      personas again: for several seconds every persona runs in exactly one container, the one
#      the registry places it on;
#   5. teardown, always (also on failure or interruption).
#
# usage: deploy/container-partition-test.sh BINARY       e.g. target/debug/mindmesh
# Where no Docker engine answers it prints "skipped: no Docker engine" and exits 0.
set -euo pipefail
# shellcheck source=deploy/container-harness.sh
source "$(dirname "$0")/container-harness.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 BINARY" >&2; exit 2; }
deadline_s=${PARTITION_DEADLINE_S:-10}
harness_init partition "$1"
bring_up

leader=$LEADER
# the victim: a node other than the leader that owns personas
victim=""
for n in "${NODES[@]}"; do
    [[ $n != "$leader" ]] || continue
    if jq -e --arg n "$n" '[.personas[] | select(.node == $n)] | length > 0' <<<"$STATUS_JSON" >/dev/null; then
        victim=$n
        break
    fi
done
[[ -n $victim ]] || fail "no node other than the leader $leader owns a persona"
mapfile -t moved < <(jq -r --arg n "$victim" '.personas[] | select(.node == $n) | .name' <<<"$STATUS_JSON")
majority=()
for n in "${NODES[@]}"; do [[ $n == "$victim" ]] || majority+=("$n"); done
net=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.network=mesh")
[[ -n $net ]] || fail "cannot find the mesh network of $PROJECT"
vc=$(container_of "$victim")

# in_majority: "persona node" for every persona process in the majority's containers
in_majority() {
    local n p
    for n in "${majority[@]}"; do
        while read -r p; do [[ -z $p ]] || echo "$p $n"; done < <(running_here "$n")
    done
}

say "partitioning $victim (owns: ${moved[*]}; leader: $leader) from ${majority[*]}"
t_cut=$(now_ms)
docker network disconnect "$net" "$vc"

fenced_ms="" failed_over_ms=""
deadline=$((t_cut + deadline_s * 1000))
while true; do
    # the majority first, then the victim: a persona seen on the victim after it was seen on
    # the majority ran on both at once
    maj_procs=$(in_majority)
    victim_procs=$(running_here "$victim" || true)
    for p in "${moved[@]}"; do
        if grep -qx "$p" <<<"$victim_procs" && grep -q "^$p " <<<"$maj_procs"; then
            fail "persona $p runs on both sides of the partition: in $victim and in $(grep "^$p " <<<"$maj_procs" | cut -d' ' -f2)"
        fi
    done

    if [[ -z $fenced_ms ]]; then
        vs=$(personas "$victim") || vs=""
        still=0
        for p in "${moved[@]}"; do
            grep -qx "$p" <<<"$victim_procs" && still=1
            if [[ -n $vs ]]; then
                phase=$(jq -r --arg p "$p" '.[] | select(.name == $p) | .phase' <<<"$vs")
                [[ $phase != running && $phase != starting ]] || still=1
            else
                still=1
            fi
        done
        if ((still == 0)); then
            fenced_ms=$(($(now_ms) - t_cut))
            say "$victim fenced itself after $(secs "$fenced_ms") s: no process of ${moved[*]} left in its container; its own API shows:"
            jq -r --argjson ps "$(printf '%s\n' "${moved[@]}" | jq -R . | jq -s .)" \
                '.[] | select(.name as $n | $ps | index($n)) | "    \(.name): \(.phase)\(if .reason then " (\(.reason))" else "" end)"' <<<"$vs"
        fi
    fi

    if [[ -z $failed_over_ms ]]; then
        ms=$(status "$leader") || ms='{}'
        ok=1
        for p in "${moved[@]}"; do
            where=$(jq -r --arg p "$p" '.personas[]? | select(.name == $p and .phase == "running") | .node' <<<"$ms")
            # running, by the majority's registry, on one of its nodes, and its process is there
            if [[ -z $where || $where == "$victim" ]] || ! grep -qx "$p $where" <<<"$maj_procs"; then ok=0; fi
        done
        if ((ok)); then
            failed_over_ms=$(($(now_ms) - t_cut))
            say "the majority runs ${moved[*]} after $(secs "$failed_over_ms") s:"
            jq -r --argjson ps "$(printf '%s\n' "${moved[@]}" | jq -R . | jq -s .)" \
                '.personas[] | select(.name as $n | $ps | index($n)) | "    \(.name) on \(.node): \(.phase), epoch \(.epoch)"' <<<"$ms"
        fi
    fi

    [[ -z $fenced_ms || -z $failed_over_ms ]] || break
    if (($(now_ms) > deadline)); then
        [[ -n $fenced_ms ]] || say "$victim still runs (or its API still shows running) some of ${moved[*]}; its processes: $(tr '\n' ' ' <<<"$victim_procs")"
        [[ -n $failed_over_ms ]] || say "the majority does not run all of ${moved[*]}; its persona processes: $(tr '\n' ' ' <<<"$maj_procs")"
        fail "no fencing and failover within $deadline_s s of the partition"
    fi
    sleep 0.2
done

say "reconnecting $victim"
t_back=$(now_ms)
docker network connect --alias "$victim" "$net" "$vc"

# it rejoins: it follows the majority's leader, and the leader sees it healthy
deadline=$((t_back + 30000))
while true; do
    ms=$(status "$leader") || ms=""
    vs=$(status "$victim") || vs=""
    if [[ -n $ms && -n $vs ]]; then
        lead=$(jq -r '.mesh.leader // empty' <<<"$ms")
        if [[ -n $lead ]] &&
            jq -e --arg l "$lead" '.mesh.leader == $l and .mesh.role != "leader"' <<<"$vs" >/dev/null &&
            jq -e --arg v "$victim" '[.mesh.nodes[] | select(.name == $v and .healthy)] | length == 1' <<<"$ms" >/dev/null; then
            break
        fi
    fi
    (($(now_ms) < deadline)) || fail "$victim did not rejoin within 30 s of reconnecting"
    sleep 0.3
done
say "$victim rejoined after $(secs $(($(now_ms) - t_back))) s: follows $lead, seen healthy by it"

# and does not take back what failed over: every persona in exactly one container, the one the
# registry places it on, sampled for a while (a wrongly restarted persona would show up)
for _ in 1 2 3 4 5 6 7 8; do
    ms=$(status "$lead") || fail "the leader $lead does not answer"
    for p in "${moved[@]}"; do
        jq -e --arg p "$p" --arg v "$victim" '.personas[] | select(.name == $p) | .node != $v and .phase == "running"' \
            <<<"$ms" >/dev/null || fail "persona $p is back on $victim or not running: $(jq -c --arg p "$p" '.personas[] | select(.name == $p) | {node, phase}' <<<"$ms")"
    done
    QUIET=1 assert_placement "$ms" "${NODES[@]}"
    sleep 0.5
done
assert_placement "$ms" "${NODES[@]}"
say "none of ${moved[*]} runs on $victim again"

say "partition test passed"
echo "timing: mesh_up_s=$(secs "$UP_MS") fenced_after_s=$(secs "$fenced_ms") failed_over_after_s=$(secs "$failed_over_ms")"
