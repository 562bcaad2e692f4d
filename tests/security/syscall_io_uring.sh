# io_uring: bypasses per-syscall filtering.
. "$(dirname "$0")/lib.sh"
syscall_case "io_uring_setup"
