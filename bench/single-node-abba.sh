#!/usr/bin/env bash
# single-node-abba.sh: pushercm on one node (no Redis) against a baseline build,
# in ABBA order (baseline, this tree, this tree, baseline; repeated), so that a
# machine getting busier or quieter during the run weighs on both builds alike.
#
#   bench/single-node-abba.sh [BASELINE_REF] [ROUNDS] [SCENARIOS]
#   (defaults: 1cc497c, 6, "burst1000 fan2000 fan100x10 idle"; `make bench-single-node`)
#
# Each run starts a fresh `pushercm serve --dev` (bench/peers/pushercm/pushercm.yaml,
# the peer comparison's settings) and drives it with this tree's edgeload, so the
# client is the same for both builds. Prints one line per run and, per scenario,
# the medians of each build and their ratio. Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:-1cc497c}
rounds=${2:-6}
scenarios=${3:-burst1000 fan2000 fan100x10 idle}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git archive "$ref" | tar -x -C "$work" --one-top-level=base
(cd "$work/base" && go build -o "$work/pushercm.old" ./cmd/pushercm)
go build -o "$work/pushercm.new" ./cmd/pushercm
go build -o "$work/edgeload" ./bench/cmd/edgeload

freeport() {
	# A random port nothing answers on, below the kernel's ephemeral range
	# (32768 up), where the load tool's own connections from the run before
	# may still hold ports.
	local p
	for _ in 1 2 3 4 5; do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "$p"
}

run() { # build scenario -> one result line
	local v=$1 sc=$2 port pid line
	port=$(freeport)
	"$work/pushercm.$v" serve --dev --config bench/peers/pushercm/pushercm.yaml \
		--grpc-addr 127.0.0.1:0 --http-addr "127.0.0.1:$port" --ops-addr 127.0.0.1:0 \
		--log-level WARN >"$work/server.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$work/server.log" >&2
			echo "pushercm.$v exited before serving" >&2
			exit 1
		fi
		sleep 0.1
	done
	line=$("$work/edgeload" -addr "127.0.0.1:$port" -pid "$pid" -app-id app-id -key app-key \
		-secret app-secret -scenarios "$sc" -idle 10000 -duration 5s 2>&1 |
		grep -E -m1 'delivery_rate|KiB/conn' || true)
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	case $sc in
	idle) # RSS per connection (KiB) and connect rate
		echo "$sc $v $(sed -E 's/.*rss=[0-9.]+MiB \(([0-9.]+) KiB\/conn\).*/\1/' <<<"$line") $(sed -E 's/.*connect_rate=([0-9]+)\/s.*/\1/' <<<"$line")" ;;
	*) # delivered msg/s, p99 (ms), server CPU per message (µs)
		echo "$sc $v $(sed -E 's/.*delivery_rate=([0-9]+).*/\1/' <<<"$line") $(sed -E 's/.*p99=([0-9.]+)(ms|s).*/\1\2/' <<<"$line") $(sed -E 's/.*\(([0-9.]+) us\/msg\).*/\1/' <<<"$line")" ;;
	esac
}

results=$work/results
for sc in $scenarios; do
	for i in $(seq 1 "$rounds"); do
		for v in old new new old; do
			r=$(run "$v" "$sc")
			echo "round $i $r load=$(cut -d' ' -f1 /proc/loadavg)"
			echo "$r" >>"$results"
		done
	done
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) printf "%.10g\n", a[(NR+1)/2]; else printf "%.10g\n", (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "# medians: baseline $ref (old) and this tree (new), new ÷ old"
for sc in $scenarios; do
	case $sc in
	idle) cols="3:KiB/conn 4:connect/s" ;;
	*) cols="3:delivered/s 4:p99 5:cpu-µs/msg" ;;
	esac
	for c in $cols; do
		col=${c%%:*} name=${c#*:}
		o=$(awk -v s="$sc" -v c="$col" '$1==s && $2=="old" {x=$c; sub(/ms$/,"",x); print x}' "$results" | median)
		n=$(awk -v s="$sc" -v c="$col" '$1==s && $2=="new" {x=$c; sub(/ms$/,"",x); print x}' "$results" | median)
		awk -v s="$sc" -v k="$name" -v o="$o" -v n="$n" 'BEGIN {printf "%-10s %-12s old %-10s new %-10s new÷old %.3f\n", s, k, o, n, (o > 0 ? n / o : 0)}'
	done
done
