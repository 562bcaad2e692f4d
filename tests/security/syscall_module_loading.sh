# init_module, finit_module, delete_module: kernel code loading (this kernel may lack modules: the host then says ENOSYS, the sandbox still EPERM).
. "$(dirname "$0")/lib.sh"
syscall_case "init_module" "finit_module" "delete_module"
