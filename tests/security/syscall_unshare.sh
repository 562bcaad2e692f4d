# unshare and clone with CLONE_NEW*: a new user namespace reopens kernel surface (and mount/net namespaces with it) that the sandbox removed.
. "$(dirname "$0")/lib.sh"
syscall_case "unshare" "unshare_user" "unshare_net" "clone_newuser"
