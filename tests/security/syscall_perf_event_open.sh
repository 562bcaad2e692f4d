# perf_event_open: performance counters (side channels, kernel bugs).
. "$(dirname "$0")/lib.sh"
syscall_case "perf_event_open"
