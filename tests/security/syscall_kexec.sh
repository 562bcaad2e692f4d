# kexec_load, kexec_file_load: replacing the running kernel.
. "$(dirname "$0")/lib.sh"
syscall_case "kexec_load" "kexec_file_load"
