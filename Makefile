# sbx build. `make` builds, `make test` installs what is missing, builds and
# runs every test, `make run` installs, builds and runs the main job.
# SAN=1 builds with AddressSanitizer+UBSan into build-asan/.

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-asan
# float-cast-overflow is UB in C that gcc's `undefined` leaves out: a
# client's huge JSON number turned into an integer (timeouts).
SANFLAGS := -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all
# Copies sanitizer reports to files (tests/san/report_hook.c); on
# every link line through LDFLAGS.
SAN_OBJ := $(BUILD)/tests/san/report_hook.o
else
BUILD ?= build
SANFLAGS :=
endif

CC ?= cc
OPT ?= -O2
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
          -Wno-unused-parameter -fno-strict-aliasing -MMD -MP $(SANFLAGS) \
          -Iinclude -Isrc/engine -Isrc/server -I$(BUILD)/gen
LDFLAGS += $(SANFLAGS) $(SAN_OBJ)

ENGINE_SRC := $(wildcard src/engine/*.c)
SERVER_SRC := $(filter-out src/server/main.c,$(wildcard src/server/*.c)) $(wildcard src/proto/*.c) $(wildcard src/client/*.c) $(wildcard src/step/*.c)
SERVER_LIBS := -lmicrohttpd -ljansson -lsqlite3 -lcrypto -lcurl -larchive -lpthread -lm
CLI_SRC    := $(wildcard src/cli/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
HELPER_SRC := $(wildcard tests/helpers/*.c)

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ    := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_BIN := $(HELPER_SRC:tests/helpers/%.c=$(BUILD)/helpers/%)

SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
LIBSBX := $(BUILD)/libsbx.a
LIBSRV := $(BUILD)/libsbxserver.a
SBX    := $(BUILD)/sbx
SBX_SERVER := $(BUILD)/sbx-server
SECCOMP_INC := $(BUILD)/gen/seccomp_filter.inc

.PHONY: all deps test run bench clean asan check-leaks
all: $(SBX) $(SBX_SERVER) $(UNIT_BIN) $(HELPER_BIN)

deps:
	@tools/deps.sh

# The seccomp filter is compiled from the policy by libseccomp at build time.
$(BUILD)/tools/seccomp_gen: tools/seccomp_gen.c src/engine/seccomp_policy.h
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O1 -Wall -Wextra -Werror -iquote src/engine $< -o $@ -lseccomp
$(SECCOMP_INC): $(BUILD)/tools/seccomp_gen
	@mkdir -p $(dir $@)
	$< > $@.tmp && mv $@.tmp $@

# Interpreter drivers for REPLs are plain .py/.js files, embedded as C arrays.
REPL_INC := $(BUILD)/gen/repl_drivers.inc
$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -O1 -Wall -Wextra -Werror $< -o $@
$(REPL_INC): $(BUILD)/tools/embed src/server/repl_driver.py src/server/repl_driver.js
	@mkdir -p $(dir $@)
	{ $< repl_driver_py src/server/repl_driver.py && $< repl_driver_js src/server/repl_driver.js; } > $@.tmp && mv $@.tmp $@
$(BUILD)/src/server/repl.o: $(REPL_INC)

ifeq ($(SAN),1)
# Not instrumented itself: it runs inside the sanitizers' reports.
$(SAN_OBJ): tests/san/report_hook.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -c $< -o $@
# LDFLAGS names $(SAN_OBJ) on the link lines.
$(SBX) $(SBX_SERVER) $(UNIT_BIN) $(BUILD)/bench/idle_mem $(BUILD)/bench/server_bench: $(SAN_OBJ)
# tests/run.sh runs it first: proof that reports reach its log dir.
$(BUILD)/tests/san/canary: tests/san/canary.c $(SAN_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $< -o $@
all: $(BUILD)/tests/san/canary
endif

$(BUILD)/%.o: %.c | $(SECCOMP_INC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIBSBX): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# `sbx` itself is linked statically against musl when musl-gcc is there
# (not under sanitizers): glibc's start-up alone costs ~0.5 ms per exec on
# hosts where CPUID traps (VMs), which is a quarter of a sandbox launch.
# The unit tests link the same sources against glibc (libsbx.a).
MUSL_CC := $(shell command -v musl-gcc 2>/dev/null)
KHDR := $(BUILD)/kheaders
MUSL_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/musl/%.o) $(CLI_SRC:%.c=$(BUILD)/musl/%.o)

# musl's headers do not include the kernel's; point at Debian's copies.
$(KHDR)/.stamp:
	@mkdir -p $(KHDR)
	ln -sfn /usr/include/linux $(KHDR)/linux
	ln -sfn /usr/include/$$($(CC) -print-multiarch)/asm $(KHDR)/asm
	ln -sfn /usr/include/asm-generic $(KHDR)/asm-generic
	@touch $@

$(BUILD)/musl/%.o: %.c | $(SECCOMP_INC) $(KHDR)/.stamp
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(CFLAGS) -isystem $(KHDR) -c $< -o $@

ifeq ($(SAN)$(if $(MUSL_CC),musl,),0musl)
$(SBX): $(MUSL_OBJ)
	$(MUSL_CC) -static $(MUSL_OBJ) -o $@ -lm
else
$(SBX): $(CLI_OBJ) $(LIBSBX)
	$(CC) $(LDFLAGS) $(CLI_OBJ) $(LIBSBX) -o $@ -lm
endif

$(LIBSRV): $(SERVER_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The server: glibc and Debian's libraries; `sbx server ...` execs it.
$(SBX_SERVER): $(BUILD)/src/server/main.o $(LIBSRV) $(LIBSBX)
	$(CC) $(LDFLAGS) $< $(LIBSRV) $(LIBSBX) -o $@ $(SERVER_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIBSRV) $(LIBSBX)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIBSRV) $(LIBSBX) -o $@ $(SERVER_LIBS)

# Helpers run inside sandboxes (bind-mounted in by tests): static so they
# need nothing from the image.
$(BUILD)/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O1 -Wall -Wextra -Werror -static $< -o $@

test: deps
	$(MAKE) all
	tests/run.sh $(BUILD)

# The suite against build-asan: every process's ASan/LSan/UBSan report is
# collected in build-asan/sanitizer-logs and fails the run (tests/run.sh).
asan: deps
	$(MAKE) SAN=1 all
	tests/run.sh build-asan

run: deps
	$(MAKE) all
	tools/demo.sh $(BUILD)

$(BUILD)/bench/idle_mem: bench/idle_mem.c $(LIBSBX)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIBSBX) -o $@ -lpthread

$(BUILD)/bench/server_bench: bench/server_bench.c $(LIBSRV) $(LIBSBX)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIBSRV) $(LIBSBX) -o $@ $(SERVER_LIBS)

bench: all $(BUILD)/bench/idle_mem $(BUILD)/bench/server_bench
	bench/start.sh $(BUILD) --update-docs
	bench/server.sh $(BUILD) --update-docs
	bench/sdk.sh $(BUILD) --update-docs

clean:
	rm -rf build build-asan

# ---- fuzzing (tests/fuzz, docs/security.md) ---------------------------------
# Each tests/fuzz/fuzz_<name>.c defines LLVMFuzzerTestOneInput. `all` links
# it with replay_main.c into $(BUILD)/fuzz/replay_<name>, which
# tests/cli/test_fuzz_regress.sh runs over tests/fuzz/corpus/<name> and
# tests/fuzz/regress/<name> (plain $(CC), no clang needed). `make fuzz`
# builds the harnesses with clang's libFuzzer + ASan/UBSan into build-fuzz/
# and runs each for FUZZ_SECONDS (tools/fuzz.sh).
FUZZ_SECONDS ?= 30
FUZZ_BUILD := build-fuzz
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SUPPORT := $(BUILD)/tests/fuzz/harness.o
# Harnesses that feed requests without libmicrohttpd (tests/fuzz/harness.h).
FUZZ_FAKE_REQ := rpc e2b daytona connect
FUZZ_WRAP := -Wl,--wrap=sbx_http_header,--wrap=sbx_http_query,--wrap=sbx_http_query_all,--wrap=sbx_http_client_socket
fuzz_link = $(if $(filter $(1),$(FUZZ_FAKE_REQ)),$(FUZZ_WRAP))

all: $(FUZZ_NAMES:%=$(BUILD)/fuzz/replay_%)

$(BUILD)/fuzz/replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay_main.o $(FUZZ_SUPPORT) $(LIBSRV) $(LIBSBX) $(SAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(filter-out $(SAN_OBJ),$(filter %.o,$^)) $(LIBSRV) $(LIBSBX) -o $@ $(SERVER_LIBS) $(call fuzz_link,$*)

$(BUILD)/fuzz/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_SUPPORT) $(LIBSRV) $(LIBSBX)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $(filter %.o,$^) $(LIBSRV) $(LIBSBX) -o $@ $(SERVER_LIBS) $(call fuzz_link,$*)

fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)
# Kept between builds (make would delete them as intermediates).
.SECONDARY: $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/fuzz_%.o) $(BUILD)/tests/fuzz/replay_main.o $(FUZZ_SUPPORT)

fuzz:
	@command -v clang >/dev/null 2>&1 || { echo "make fuzz needs clang (libFuzzer comes with it): apt-get install -y clang" >&2; exit 1; }
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang \
	    SANFLAGS='-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined' fuzz-bins
	tools/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_NAMES)

.PHONY: fuzz fuzz-bins
-include $(wildcard $(BUILD)/tests/fuzz/*.d)
# ---- end of fuzzing -----------------------------------------------------------

-include $(wildcard $(BUILD)/src/*/*.d $(BUILD)/musl/src/*/*.d $(BUILD)/tests/unit/*.d)
