# keyctl, add_key, request_key: kernel keyrings are not namespaced.
. "$(dirname "$0")/lib.sh"
syscall_case "keyctl" "add_key" "request_key"
