# raw sockets: AF_PACKET (sniffing, a history of bugs) and SOCK_RAW IP (spoofing).
. "$(dirname "$0")/lib.sh"
syscall_case "packet_socket" "raw_socket"
