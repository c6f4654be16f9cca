#!/bin/bash
# The inside of make test-kernels (scripts/test-kernels.sh, docs/kernels.md).
#
#   test-kernels-guest.sh guest OUT   as PID 1 of a qemu guest: mounts what the
#                                     tests need, runs them, powers off
#   test-kernels-guest.sh host OUT    the same tests on the running kernel
#   test-kernels-guest.sh table DIR LABEL...  the Markdown table of the results
#
# OUT holds `settings` (repo, bin, suite, sets: "" for all) and receives kernel, doctor.json,
# results.tsv (probe set, verdict, detail) and one log per probe set.
#
# For each probe set `bpfsnap doctor --json` lists, the line is
#   passed       its tests passed (BPFSNAP_REQUIRE_BPF=1: a skip fails)
#   failed       a test failed, or it refused to start without saying why
#   not supported here: REASON
#                doctor says the kernel lacks what it needs, and
#                `capture -p SET` refuses at start giving that reason
set -u
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root BPFSNAP_REQUIRE_BPF=1 LANG=C.UTF-8

# The tests each probe set runs. quick: a few that load and attach every
# program of the set and check its rows against a workload with known
# answers; all: every test named after the set. A set without an entry
# runs the tests named after it (Test<Set>..., any case).
quick_tests() {
	case $1 in
	doctor) echo '^TestDoctorOnThisKernel$' ;;
	process) echo '^(TestCaptureCommandTree|TestCaptureWholeHostSeesShortLivedProcess)$' ;;
	cpu) echo '^(TestCPUKnownRatio|TestUnwindStackBytesStayOnTheNode)$' ;;
	http) echo '^(TestHTTPGoServer|TestHTTPNginx)$' ;;
	mem) echo '^(TestMemLeaksOfCommand|TestMemThreadsExact)$' ;;
	# The off-CPU split of each route needs http as well.
	offcpu) if can http; then
		echo '^(TestOffCPUFloodAccounted|TestOffCPUThreadPerConnectionC)$'
	else
		echo '^TestOffCPUFloodAccounted$'
	fi ;;
	*) all_tests "$1" ;;
	esac
}
all_tests() {
	case $1 in
	doctor) echo '^TestDoctor' ;;
	process) echo '^(TestCapture|TestK8s|TestRing|TestSignals|TestKill9|TestFullDisk|TestHostile|TestFlood|TestLongWindow|TestBadProbe|TestOutput|TestPIDReuse)' ;;
	cpu) echo '^(TestCPU|TestUnwind|TestInlined)' ;;
	*) echo "^Test(?i)$1" ;;
	esac
}

log() { echo "test-kernels: $*" >&2; }

# can SET: doctor says SET can start here.
can() { [ "$(jq -r --arg s "$1" '.probe_sets[] | select(.name == $s) | .ok' "$out/doctor.json")" = true ]; }

# chosen SET: SET is in the sets asked for (all when none are named).
chosen() { [ -z "${sets:-}" ] || [[ " $sets " == *" $1 "* ]]; }

# result SET VERDICT DETAIL
result() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$out/results.tsv"; }

# run_tests SET BINARY REGEX: runs them, one verdict line.
run_tests() {
	local set=$1 bin=$2 re=$3 logf=$out/logs/$1.log t0 rc
	t0=$(date +%s)
	"$bin" -test.v -test.count=1 -test.timeout 60m -test.run "$re" >"$logf" 2>&1
	rc=$?
	local secs=$(($(date +%s) - t0))
	local passed failed skipped
	passed=$(grep -c '^--- PASS' "$logf")
	failed=$(grep '^--- FAIL' "$logf" | awk '{print $3}' | paste -sd, -)
	skipped=$(grep '^--- SKIP' "$logf" | awk '{print $3}' | paste -sd, -)
	if [ $rc = 0 ] && [ "$passed" -gt 0 ] && [ -z "$skipped" ]; then
		result "$set" passed "$passed tests, ${secs} s"
	elif [ "$passed" = 0 ] && [ -z "$failed" ] && grep -q 'no tests to run' "$logf"; then
		result "$set" failed "no test matches $re"
	else
		result "$set" failed "${failed:-exit $rc}${skipped:+; skipped: $skipped} (${secs} s; log: logs/$set.log)"
	fi
}

# refuses SET REASON: a set doctor finds unsupported must refuse at start,
# before the window, with doctor's reason.
refuses() {
	local set=$1 reason=$2 logf=$out/logs/$1.log rc
	"$bin/bpfsnap" capture -p "$set" -d 30s -o /tmp/refuse-"$set".bpfsnap -- sleep 1 >"$logf" 2>&1
	rc=$?
	if [ $rc != 0 ] && grep -q "no probe set could attach: $set: " "$logf" && grep -qF "$reason" "$logf"; then
		result "$set" "not supported here" "$reason"
	else
		result "$set" failed "doctor says \"$reason\" but capture -p $set did not refuse at start with it (log: logs/$set.log)"
	fi
}

run() {
	out=$1
	# shellcheck disable=SC1091
	. "$out/settings"
	# Under TCG latency comparisons are logged, not asserted (testenv.Emulated).
	[ "${accel:-}" = tcg ] && export BPFSNAP_EMULATED=1
	mkdir -p "$out/logs"
	: >"$out/results.tsv"
	uname -r >"$out/kernel"
	cd "$repo/capture" || exit 1
	if ! "$bin/bpfsnap" doctor --json >"$out/doctor.json" 2>"$out/logs/doctor-cli.log"; then
		log "doctor says capture cannot run here"
	fi
	local pick=quick_tests
	[ "$suite" = all ] && pick=all_tests
	run_tests doctor "$bin/capture.test" "$($pick doctor)"
	# The always-on process probe, then every set doctor lists.
	chosen process && run_tests process "$bin/capture.test" "$($pick process)"
	local set ok reason
	while IFS=$'\t' read -r set ok reason; do
		[ -n "$set" ] && chosen "$set" || continue
		if [ "$ok" = true ]; then
			run_tests "$set" "$bin/capture.test" "$($pick "$set")"
		else
			refuses "$set" "$reason"
		fi
	done < <(jq -r '.probe_sets[] | [.name, (.ok|tostring), (.reason // "")] | @tsv' "$out/doctor.json")
	if [ "$suite" = all ]; then
		# Everything else: the verbs on real captures.
		run_tests cli "$bin/cmd.test" .
	fi
	touch "$out/done"
}

# The guest: PID 1 on the shared root. It runs what a node runs: cgroup v2
# only (the default of every distribution these kernels ship in), tracefs,
# bpffs, devpts, loopback.
guest() {
	mount -t tracefs tracefs /sys/kernel/tracing
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	mount -t bpf bpf /sys/fs/bpf
	mount -t cgroup2 cgroup2 /sys/fs/cgroup
	mkdir -p /dev/pts /dev/shm
	mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
	mount -t tmpfs tmpfs /dev/shm
	mount -t tmpfs tmpfs /run/lock 2>/dev/null
	ln -sf /proc/self/fd /dev/fd
	ip link set lo up
	hostname bpfsnap-guest
	# The controllers the tests use (cpu throttling, memory) for children.
	echo "+cpu +memory +pids" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
	run "$1"
	sync
	echo o >/proc/sysrq-trigger
	sleep 60
}

# table DIR LABEL...: kernels as rows, probe sets as columns; reasons below.
table() {
	local dir=$1
	shift
	local sets=() l s
	for l in "$@"; do
		while IFS=$'\t' read -r s _; do
			[[ " ${sets[*]} " == *" $s "* ]] || sets+=("$s")
		done <"$dir/$l/results.tsv"
	done
	printf '| kernel |'
	for s in "${sets[@]}"; do printf ' %s |' "$s"; done
	printf '\n|---|'
	for s in "${sets[@]}"; do printf -- '---|'; done
	printf '\n'
	local notes=()
	for l in "$@"; do
		printf '| %s |' "$(cat "$dir/$l/kernel" 2>/dev/null || echo "$l")"
		for s in "${sets[@]}"; do
			local line verdict detail
			line=$(awk -F'\t' -v s="$s" '$1 == s' "$dir/$l/results.tsv")
			verdict=$(cut -f2 <<<"$line")
			detail=$(cut -f3 <<<"$line")
			case $verdict in
			passed) printf ' passed |' ;;
			"") printf ' — |' ;;
			*)
				notes+=("$detail")
				printf ' %s [%d] |' "$verdict" "${#notes[@]}"
				;;
			esac
		done
		printf '\n'
	done
	local i
	for i in "${!notes[@]}"; do printf '\n[%d] %s' "$((i + 1))" "${notes[$i]}"; done
	printf '\n'
}

case ${1:-} in
guest) guest "$2" ;;
host) run "$2" ;;
table) shift && table "$@" ;;
*)
	echo "usage: $0 guest|host OUT | table DIR LABEL..." >&2
	exit 2
	;;
esac
