# bpf: loading eBPF programs (large, exploited kernel surface).
. "$(dirname "$0")/lib.sh"
syscall_case "bpf"
