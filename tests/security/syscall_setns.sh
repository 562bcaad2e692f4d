# setns: joining another namespace (here: the sandbox's own net namespace by fd) would leave the sandbox's.
. "$(dirname "$0")/lib.sh"
syscall_case "setns"
