# pivot_root and chroot: changing the root is how a process steps around one.
. "$(dirname "$0")/lib.sh"
syscall_case "pivot_root" "chroot"
