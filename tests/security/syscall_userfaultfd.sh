# userfaultfd: the race-widening primitive of many kernel exploits.
. "$(dirname "$0")/lib.sh"
syscall_case "userfaultfd"
