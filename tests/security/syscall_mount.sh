# mount and umount: the mount table is sbx's (a new mount or an unmount would change what the sandbox sees or reveal what lies below).
. "$(dirname "$0")/lib.sh"
syscall_case "mount" "umount"
