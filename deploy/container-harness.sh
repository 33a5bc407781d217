# Shared by deploy/container-test.sh and deploy/container-partition-test.sh (sourced, not run):
# bring the 3-node mesh of deploy/compose.yaml up from a freshly built image under a project
# name of its own, read each node's `status --json`, see which persona runs in which
# container, and tear everything down whatever happens.
#
# Every resource a run makes carries its compose project name, `mindmesh-test-<pid>-<kind>`,
# and its image is `mindmesh-test:<project>`: teardown removes exactly those, and a run also
# removes what an earlier run left behind when that run's process is gone (killed before its
# trap could run), so no container, network, volume or image outlives a run.
# shellcheck shell=bash

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODES=(node1 node2 node3)
PROJECT_PREFIX=mindmesh-test

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S.%3N)" "$*"; }
fail() {
    say "FAILED: $*"
    exit 1
}
now_ms() { date +%s%3N; }
# milliseconds as seconds with one decimal
secs() { printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# harness_init KIND BINARY: checks the tools (skips when no Docker engine answers), names the
# run, writes its mesh key and token. Sets PROJECT, IMAGE, WORK, COMPOSE.
harness_init() {
    local kind=$1
    BINARY=$2
    [[ -x $BINARY ]] || fail "$BINARY is not an executable (usage: $0 BINARY)"
    if ! docker info >/dev/null 2>&1; then
        echo "skipped: no Docker engine (docker info failed)"
        exit 0
    fi
    # an engine answers: from here on a missing tool is a failure, not a reason to skip
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        fail "a Docker engine answers but neither 'docker compose' nor 'docker-compose' is installed"
    fi
    command -v jq >/dev/null || fail "jq is required (apt-get install jq)"

    PROJECT="$PROJECT_PREFIX-$$-$kind"
    IMAGE="$PROJECT_PREFIX:$PROJECT"
    remove_stale_runs
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$PROJECT.XXXXXX")
    chmod 0700 "$WORK"
    trap teardown EXIT
    # an interrupted run exits, so the EXIT trap tears down
    trap 'say "interrupted"; exit 130' INT
    trap 'say "terminated"; exit 143' TERM
    trap 'say "hung up"; exit 129' HUP

    "$BINARY" mesh init --out "$WORK/mesh.key" >/dev/null
    # the nodes run as uid 10001 in their containers: the key must be readable by them; the
    # run's directory (0700) keeps other users of this host out, and the key dies with the run
    chmod 0644 "$WORK/mesh.key"
    export MINDMESH_MESH_KEY="$WORK/mesh.key"
    MINDMESH_API_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    export MINDMESH_API_TOKEN
    export MINDMESH_IMAGE="$IMAGE"
    say "run $PROJECT: ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null || true), engine $(docker version --format '{{.Server.Version}}')"
}

compose() { "${COMPOSE[@]}" -f "$here/compose.yaml" -p "$PROJECT" "$@"; }

# remove_project NAME: every container, network and volume of a compose project, and its image
remove_project() {
    local p=$1 ids
    mapfile -t ids < <(docker ps -aq --filter "label=com.docker.compose.project=$p")
    ((${#ids[@]} == 0)) || docker rm -f -v "${ids[@]}" >/dev/null 2>&1 || true
    mapfile -t ids < <(docker network ls -q --filter "label=com.docker.compose.project=$p")
    ((${#ids[@]} == 0)) || docker network rm "${ids[@]}" >/dev/null 2>&1 || true
    mapfile -t ids < <(docker volume ls -q --filter "label=com.docker.compose.project=$p")
    ((${#ids[@]} == 0)) || docker volume rm -f "${ids[@]}" >/dev/null 2>&1 || true
    docker image rm -f "$PROJECT_PREFIX:$p" >/dev/null 2>&1 || true
}

# Runs of these scripts whose process is gone left their project behind: remove it.
remove_stale_runs() {
    local p pid
    {
        docker ps -a --format '{{.Label "com.docker.compose.project"}}'
        docker network ls --format '{{.Label "com.docker.compose.project"}}'
        docker volume ls --format '{{.Label "com.docker.compose.project"}}'
        docker image ls "$PROJECT_PREFIX" --format '{{.Tag}}'
    } 2>/dev/null | { grep "^$PROJECT_PREFIX-[0-9]*-" || true; } | sort -u | while read -r p; do
        pid=${p#"$PROJECT_PREFIX"-}
        pid=${pid%%-*}
        if ! kill -0 "$pid" 2>/dev/null; then
            say "removing $p, left behind by an earlier run"
            remove_project "$p"
        fi
    done
    # and their directories (key, logs, the image's staging area)
    local d
    for d in "${TMPDIR:-/tmp}/$PROJECT_PREFIX"-*; do
        [[ -d $d ]] || continue
        pid=${d##*/"$PROJECT_PREFIX"-}
        pid=${pid%%-*}
        [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null && rm -rf "$d"
    done
    return 0
}

TORN_DOWN=0
teardown() {
    local code=$?
    trap - EXIT INT TERM HUP
    ((TORN_DOWN)) && return
    TORN_DOWN=1
    if ((code != 0)) && [[ -n ${PROJECT:-} ]]; then
        for n in "${NODES[@]}"; do
            local c
            c=$(container_of "$n" 2>/dev/null) || continue
            [[ -n $c ]] || continue
            echo "--- last log lines of $n"
            docker logs --tail 25 "$c" 2>&1 | cut -c1-400
        done
    fi
    if [[ -n ${PROJECT:-} ]]; then
        say "tearing down $PROJECT"
        compose down -v --remove-orphans -t 10 >/dev/null 2>&1 || true
        # whatever `down` missed (an interrupted `up`, a container it no longer knows)
        remove_project "$PROJECT"
        local left
        left=$(
            docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"
            docker network ls -q --filter "label=com.docker.compose.project=$PROJECT"
            docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT"
        )
        if [[ -n $left ]]; then
            say "teardown left resources behind: $left"
            code=1
        fi
    fi
    [[ -z ${WORK:-} ]] || rm -rf "$WORK"
    exit "$code"
}

build_image() {
    local t0
    t0=$(now_ms)
    # staged inside the run's directory, so a killed run leaves no staging area behind either
    TMPDIR=$WORK "$here/build-image.sh" "$BINARY" "$IMAGE" 2>&1 | grep -v -i -e deprecated -e buildx -e 'docs.docker.com' -e '^ *$' || true
    docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "the image $IMAGE was not built"
    say "image $IMAGE built in $(secs $(($(now_ms) - t0))) s"
}

# container_of NODE: the container id of a service, running or not (asked of the engine: the
# compose tool is slow to start, and v1 and v2 list stopped containers differently)
container_of() {
    docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1"
}

# status NODE: that node's `mindmesh status --json`, asked inside its container (the token is in
# its environment), or nothing if it does not answer within 10 s
status() {
    local c
    c=$(container_of "$1") && [[ -n $c ]] || return 1
    timeout 10 docker exec "$c" /mindmesh status --json --api http://127.0.0.1:7070 2>/dev/null
}

# personas NODE: that node's `mindmesh persona list --json` (its own API's view of every
# persona). Unlike `status`, it asks no other node: `status` also fetches the leader's analysis,
# which hangs for seconds on a node cut off from a leader it still believes in.
personas() {
    local c
    c=$(container_of "$1") && [[ -n $c ]] || return 1
    timeout 10 docker exec "$c" /mindmesh persona list --json --api http://127.0.0.1:7070 2>/dev/null
}

# running_here NODE: the personas whose process runs in that node's container, one a line
# (each persona's command line carries `--persona-id NAME`, see deploy/compose/node1.toml)
running_here() {
    local c
    c=$(container_of "$1") && [[ -n $c ]] || return 1
    docker top "$c" -o pid,args 2>/dev/null | awk '/demo-persona/ { for (i = 1; i < NF; i++) if ($i == "--persona-id") print $(i + 1) }' | sort
}

# mesh_ready JSON...: each node's status agrees on one leader and three healthy members, with
# exactly one of them leading; every persona of the mesh is running. Prints the leader.
mesh_ready() {
    local leader="" s l
    for s in "$@"; do
        l=$(jq -r '
            .mesh as $m
            | if ($m.nodes | length) == 3
                 and ([$m.nodes[] | select(.role == "leader")] | length) == 1
                 and ([$m.nodes[] | select(.healthy)] | length) == 3
                 and $m.leader != null
                 and ([$m.nodes[] | select(.role == "leader")][0].name == $m.leader)
                 and (.personas | length) == 6
                 and ([.personas[] | select(.phase == "running" and .node != null)] | length) == 6
              then $m.leader else empty end' <<<"$s") || return 1
        [[ -n $l ]] || return 1
        [[ -z $leader || $leader == "$l" ]] || return 1
        leader=$l
    done
    echo "$leader"
}

# wait_mesh_up TIMEOUT_S: poll until all three nodes agree (mesh_ready); sets LEADER, UP_MS
wait_mesh_up() {
    local deadline=$(($(now_ms) + $1 * 1000)) t0=$2 s1 s2 s3
    while true; do
        s1=$(status node1) && s2=$(status node2) && s3=$(status node3) &&
            LEADER=$(mesh_ready "$s1" "$s2" "$s3") && break
        if (($(now_ms) > deadline)); then
            for n in "${NODES[@]}"; do
                echo "--- status of $n"
                status "$n" | jq -c '{node, mesh: {role: .mesh.role, leader: .mesh.leader, nodes: [.mesh.nodes[]? | {name, role, healthy}]}, personas: [.personas[]? | {name, node, phase}]}' || echo "(no answer)"
            done
            fail "the mesh did not come up with 3 nodes, one leader and 6 running personas within $1 s"
        fi
        sleep 0.3
    done
    UP_MS=$(($(now_ms) - t0))
    STATUS_JSON=$s1
}

# assert_placement JSON NODE...: every persona in the status JSON runs as a process in exactly
# one container — the one of the node the registry places it on — among the NODES given
# (QUIET=1: say nothing when it holds)
assert_placement() {
    local json=$1 n p owner where
    shift
    declare -A in_container=()
    for n in "$@"; do
        while read -r p; do
            [[ -n $p ]] || continue
            [[ -z ${in_container[$p]:-} ]] || fail "persona $p runs in two containers: ${in_container[$p]} and $n"
            in_container[$p]=$n
        done < <(running_here "$n")
    done
    while read -r p owner; do
        where=${in_container[$p]:-}
        [[ $where == "$owner" ]] || fail "persona $p is placed on $owner but its process runs in: ${where:-no container}"
    done < <(jq -r '.personas[] | "\(.name) \(.node)"' <<<"$json")
    [[ -n ${QUIET:-} ]] || say "placement checked: each of $(jq '.personas | length' <<<"$json") personas runs in exactly one container, the one it is placed on"
}

# bring_up: build the image, start the mesh, wait for it; sets LEADER, UP_MS, STATUS_JSON
bring_up() {
    build_image
    local t0
    t0=$(now_ms)
    compose up -d >"$WORK/up.log" 2>&1 || {
        cat "$WORK/up.log"
        fail "compose up failed"
    }
    wait_mesh_up 90 "$t0"
    say "mesh up after $(secs "$UP_MS") s: 3 nodes agree, leader $LEADER, 6 personas running"
    jq -r '.personas[] | "    \(.name) on \(.node): \(.phase)"' <<<"$STATUS_JSON"
    assert_placement "$STATUS_JSON" "${NODES[@]}"
}
