# open_by_handle_at: the 'shocker' escape (opens any inode of a mounted file system by handle).
. "$(dirname "$0")/lib.sh"
syscall_case "open_by_handle_at"
