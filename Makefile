# swerve - plain GNU make. `make help` lists the targets.
#
# Layout rules the build relies on (so adding a module needs no Makefile edit):
#   <folder>/*.c                 library sources (folders: LIB_DIRS), except
#   envs/main.c, envs/cmd_*.c    the full command, swerve-core (not in the library)
#   envs/launch_main.c           `swerve`: the launcher (no libc where it can)
#   envs/exec_main.c             swerve-exec: `swerve exec` alone, lean
#   policy/*_main.c              other commands (swerve-train)
#   kernels/*.cu, policy/*.cu    CUDA sources, built only where nvcc exists
#   tests/<folder>/test_*.c      Criterion tests, one binary per file
#   tests/support/*.c            helpers linked into every test binary
#   tests/*/progs/*.c            small programs tests run (inside the sandbox)
#   tests/fuzz/fuzz_*.c          libFuzzer targets; `make test` replays their corpus
#   tests/gpu/test_*.{c,cu}      GPU tests (own harness; no Criterion on the GPU box)
#   tests/bench/bench_*.c        CPU benchmarks; tests/bench/gpu_*.{c,cu} GPU ones

PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= gcc
ifeq ($(origin CC),default)
CC      := gcc
endif
NVCC    ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

PKGS      := libseccomp libgit2 sqlite3 jansson expat
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -MMD -MP -D_GNU_SOURCE -I. $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lpthread -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
CRITERION_LIBS := -lcriterion

NVCCFLAGS ?= -O3 -lineinfo
NVCCFLAGS += -std=c++17 -I. -gencode=arch=compute_90a,code=sm_90a \
	     -Xcompiler -Wall,-Wextra -Werror all-warnings -MMD -MP
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lstdc++ -lm -ldl -lpthread

LIB_DIRS  := sandbox envs rewards db kernels policy
ALL_C     := $(wildcard $(addsuffix /*.c,$(LIB_DIRS)))
CLI_SRCS  := envs/main.c $(wildcard envs/cmd_*.c)
MAIN_SRCS := $(CLI_SRCS) envs/launch_main.c envs/exec_main.c $(wildcard policy/*_main.c)
LIB_SRCS  := $(filter-out $(MAIN_SRCS),$(ALL_C))
KERNEL_C  := $(wildcard kernels/*.c) sandbox/error.c
CU_SRCS   := $(wildcard kernels/*.cu policy/*.cu)

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
ASAN_OBJS := $(LIB_SRCS:%.c=$(BUILD)/asan/%.o)
CLI_OBJS  := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
CU_OBJS   := $(CU_SRCS:%.cu=$(BUILD)/cuda/%.o)
KC_OBJS   := $(KERNEL_C:%.c=$(BUILD)/obj/%.o)

LIB       := $(BUILD)/libswerve.a
ASAN_LIB  := $(BUILD)/libswerve-asan.a
CUDA_LIB  := $(BUILD)/libswerve_cuda.a
SWERVE    := $(BUILD)/swerve
SWERVE_CORE := $(BUILD)/swerve-core
SWERVE_EXEC := $(BUILD)/swerve-exec
SWERVE_TRAIN := $(BUILD)/swerve-train

SUPPORT_SRCS := $(wildcard tests/support/*.c)
SUPPORT_OBJS := $(SUPPORT_SRCS:%.c=$(BUILD)/obj/%.o)
SUPPORT_ASAN := $(SUPPORT_SRCS:%.c=$(BUILD)/asan/%.o)

UNIT_SRCS := $(wildcard $(addprefix tests/,$(addsuffix /test_*.c,$(LIB_DIRS))))
SEC_SRCS  := $(wildcard tests/security/test_*.c)
E2E_SRCS  := $(wildcard tests/e2e/test_*.c)
UNIT_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%)
ASAN_BINS := $(UNIT_SRCS:%.c=$(BUILD)/asan/%)
SEC_BINS  := $(SEC_SRCS:%.c=$(BUILD)/%)
E2E_BINS  := $(E2E_SRCS:%.c=$(BUILD)/%)
PROG_SRCS := $(wildcard tests/*/progs/*.c)
PROG_BINS := $(PROG_SRCS:tests/%.c=$(BUILD)/progs/%)

FUZZ_SRCS   := $(wildcard tests/fuzz/fuzz_*.c)
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=$(BUILD)/fuzz/replay_%)
FUZZ_BINS   := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=$(BUILD)/fuzz/fuzz_%)

BENCH_SRCS := $(wildcard tests/bench/bench_*.c)
BENCH_BINS := $(BENCH_SRCS:%.c=$(BUILD)/%)
GPU_TEST_SRCS  := $(wildcard tests/gpu/test_*.c tests/gpu/test_*.cu)
GPU_TEST_BINS  := $(addprefix $(BUILD)/,$(basename $(GPU_TEST_SRCS)))
GPU_BENCH_SRCS := $(wildcard tests/bench/gpu_*.c tests/bench/gpu_*.cu)
GPU_BENCH_BINS := $(addprefix $(BUILD)/,$(basename $(GPU_BENCH_SRCS)))

PUBLIC_HEADERS := sandbox/error.h $(wildcard sandbox/sandbox.h envs/envs.h rewards/rewards.h \
		  db/db.h kernels/kernels.h policy/policy.h)

# Debian packages `make deps` installs when missing (later issues add theirs).
DEB_PKGS := build-essential pkg-config libseccomp-dev libgit2-dev libsqlite3-dev \
	    libjansson-dev libcriterion-dev libexpat1-dev git patch python3 \
	    python3-pytest bubblewrap hyperfine clang clang-format sqlite3 iproute2 procps

ifneq ($(NVCC),)
ALL_TARGETS := $(LIB) $(SWERVE) $(SWERVE_CORE) $(SWERVE_EXEC) $(CUDA_LIB) $(SWERVE_TRAIN)
# `make test` also builds (does not run) every GPU test and benchmark where
# nvcc exists, so a change that breaks one fails CI, not the next GPU call
GPU_BUILD_CHECK := $(GPU_TEST_BINS) $(GPU_BENCH_BINS)
else
ALL_TARGETS := $(LIB) $(SWERVE) $(SWERVE_CORE) $(SWERVE_EXEC) $(SWERVE_TRAIN)
GPU_BUILD_CHECK :=
endif

.SECONDARY:

.PHONY: all pkgcheck deps test test-run test-unit test-asan test-security test-e2e test-fuzz demo \
	demo-run format test-gpu bench bench-run bench-gpu install clean help fuzz

all: pkgcheck $(ALL_TARGETS)

# a missing -dev package is one clear line, not a page of link errors
pkgcheck:
	@pkg-config --exists $(PKGS) || { echo "make: missing development packages (pkg-config $(PKGS) failed): run 'make deps' as root, or 'make test' / 'make demo', which do"; exit 1; }

help:
	@echo "make            build libswerve.a, swerve (and libswerve_cuda.a where nvcc exists)"
	@echo "make deps       install missing Debian packages (apt; idempotent)"
	@echo "make test       deps + build + unit, security, e2e tests, fuzz corpus replay, unit tests under ASan+UBSan"
	@echo "make demo       deps + build + evaluate the bundled example data"
	@echo "make test-gpu   GPU tests (skipped with a reason without nvcc or a GPU)"
	@echo "make bench      CPU benchmarks;  make bench-gpu  GPU benchmarks"
	@echo "make fuzz       build libFuzzer targets with clang"
	@echo "make format     clang-format every source file"
	@echo "make install PREFIX=/usr/local   library, headers, swerve.pc, swerve"

# ---- dependencies -----------------------------------------------------------
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: missing:$$missing (run as root: apt-get install$$missing)"; exit 1; fi; \
	  echo "make deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	fi

# ---- library and commands ---------------------------------------------------
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/asan/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(ASAN_LIB): $(ASAN_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(SWERVE_CORE): $(CLI_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJS) $(LIB) $(LDLIBS)

# `swerve exec` alone: the sandbox, libseccomp and jansson (no libgit2 & co.)
EXEC_OBJS := $(addprefix $(BUILD)/obj/envs/,exec_main.o cmd_exec.o cmd_cli.o)
$(SWERVE_EXEC): $(EXEC_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(EXEC_OBJS) $(LIB) -lseccomp -ljansson

# the launcher: static and without any C library on x86-64/arm64 (see
# envs/launch_main.c); swerve-core and swerve-exec come with it
LAUNCH_NOLIBC := $(filter x86_64 aarch64,$(shell uname -m))
$(SWERVE): envs/launch_main.c sandbox/rawsys.h | $(SWERVE_CORE) $(SWERVE_EXEC)
ifneq ($(LAUNCH_NOLIBC),)
	$(CC) -O2 -std=gnu11 $(WARN) -D_GNU_SOURCE -I. -DSWERVE_NOLIBC -static -nostdlib -fno-pie -no-pie \
	  -ffreestanding -fno-builtin -fno-stack-protector -fno-asynchronous-unwind-tables -o $@ $<
else
	$(CC) -O2 -std=gnu11 $(WARN) -D_GNU_SOURCE -I. -o $@ $<
endif

# the trainer command (policy/train_main.c); with nvcc it also links the GPU
# model (swerve-train --device gpu)
ifneq ($(NVCC),)
$(BUILD)/obj/policy/train_main.o: CFLAGS += -DPOLICY_HAVE_CUDA
$(SWERVE_TRAIN): $(BUILD)/obj/policy/train_main.o $(LIB) $(CUDA_LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(CUDA_LIB) $(LDLIBS) $(CUDA_LIBS)
else
$(SWERVE_TRAIN): $(BUILD)/obj/policy/train_main.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
endif

$(BUILD)/cuda/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(CUDA_LIB): $(CU_OBJS) $(KC_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# ---- tests ------------------------------------------------------------------
$(BUILD)/tests/%: tests/%.c $(LIB) $(SUPPORT_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(SUPPORT_OBJS) $(LIB) $(LDLIBS) $(CRITERION_LIBS)

$(BUILD)/asan/tests/%: tests/%.c $(ASAN_LIB) $(SUPPORT_ASAN)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $< $(SUPPORT_ASAN) $(ASAN_LIB) $(LDLIBS) $(CRITERION_LIBS)

# programs run by tests (inside the sandbox): plain, no library
$(BUILD)/progs/%: tests/%.c
	@mkdir -p $(@D)
	$(CC) -O1 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -o $@ $< $(PROG_LDLIBS)

$(BUILD)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(ASAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $< tests/fuzz/replay.c $(ASAN_LIB) $(LDLIBS)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRCS)
	@mkdir -p $(@D)
	clang -std=gnu11 -g -O1 -D_GNU_SOURCE -I. $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(LIB_SRCS) $(LDLIBS)

fuzz: $(FUZZ_BINS)

test-unit: $(UNIT_BINS)
test-asan: $(ASAN_BINS)

# test, demo and bench install what is missing first, then build and run in
# a second make: the packages' compile and link flags (pkg-config, read when
# the Makefile is parsed) exist only once deps has installed them, which on
# a fresh machine is during this very command
test: deps
	@$(MAKE) --no-print-directory test-run

test-run: all $(UNIT_BINS) $(ASAN_BINS) $(SEC_BINS) $(E2E_BINS) $(PROG_BINS) $(REPLAY_BINS) \
      $(GPU_BUILD_CHECK)
	@BUILD=$(BUILD) tests/run.sh \
	  $(addprefix unit:,$(UNIT_BINS)) $(addprefix sec:,$(SEC_BINS)) \
	  $(addprefix secslow:,$(SEC_BINS)) $(addprefix secprep:,$(SEC_BINS)) \
	  $(addprefix e2e:,$(E2E_BINS)) $(addprefix fuzz:,$(REPLAY_BINS)) \
	  $(addprefix asan:,$(ASAN_BINS))

# ---- GPU --------------------------------------------------------------------
# GPU binaries link only kernels/ (+ error.c): the GPU machine has no -dev
# packages for the runner's libraries, so nothing here may need them.
$(BUILD)/tests/gpu/%: tests/gpu/%.cu $(CUDA_LIB)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -o $@ $< $(CUDA_LIB) $(CUDA_LIBS)

$(BUILD)/tests/gpu/%: tests/gpu/%.c $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE $(WARN) -I. -o $@ $< $(CUDA_LIB) $(CUDA_LIBS)

$(BUILD)/tests/bench/gpu_%: tests/bench/gpu_%.cu $(CUDA_LIB)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -o $@ $< $(CUDA_LIB) $(CUDA_LIBS)

$(BUILD)/tests/bench/gpu_%: tests/bench/gpu_%.c $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE $(WARN) -I. -o $@ $< $(CUDA_LIB) $(CUDA_LIBS)

# policy's GPU test and benchmark also link the CPU reference model (libc-only
# sources) to compare against / count FLOPs.
POLICY_REF_C := policy/config.c policy/params.c policy/ref.c policy/loss.c policy/optim.c \
		policy/trainer.c
$(BUILD)/tests/gpu/test_policy_model: tests/gpu/test_policy_model.c $(POLICY_REF_C) $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE $(WARN) -I. -I$(CUDA_HOME)/include -o $@ $< $(POLICY_REF_C) $(CUDA_LIB) $(CUDA_LIBS)

# gpu_train also reads the card's power and clock (tests/bench/nvml_power.c:
# NVML opened at run time)
$(BUILD)/tests/bench/gpu_train: tests/bench/gpu_train.c tests/bench/nvml_power.c tests/bench/graph_energy.c $(POLICY_REF_C) $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE $(WARN) -I. -I$(CUDA_HOME)/include -o $@ $< tests/bench/nvml_power.c tests/bench/graph_energy.c $(POLICY_REF_C) $(CUDA_LIB) $(CUDA_LIBS)

# gpu_idle (issue 10 round 10) reads CUPTI's activity records
$(BUILD)/tests/bench/gpu_idle: tests/bench/gpu_idle.c $(POLICY_REF_C) $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE $(WARN) -I. -I$(CUDA_HOME)/include -o $@ $< $(POLICY_REF_C) $(CUDA_LIB) $(CUDA_LIBS) -lcupti

define gpu_gate
	if [ -z "$(NVCC)" ]; then echo "$(1): skipped: nvcc not found (CUDA toolkit not installed)"; exit 0; fi; \
	if ! nvidia-smi -L >/dev/null 2>&1; then echo "$(1): skipped: no NVIDIA GPU on this machine (nvidia-smi -L failed); run it on the lent H100"; exit 0; fi
endef

test-gpu:
	@$(call gpu_gate,test-gpu); \
	$(MAKE) --no-print-directory $(GPU_TEST_BINS) && BUILD=$(BUILD) tests/run.sh $(addprefix gpu:,$(GPU_TEST_BINS))

bench-gpu:
	@$(call gpu_gate,bench-gpu); \
	$(MAKE) --no-print-directory $(GPU_BENCH_BINS) && \
	for b in $(GPU_BENCH_BINS); do echo "== $$b"; $$b || exit 1; done; \
	for s in tests/bench/gpu_*.sh; do [ -f "$$s" ] || continue; echo "== $$s"; BUILD=$(BUILD) sh $$s || exit 1; done

bench: deps
	@$(MAKE) --no-print-directory bench-run

bench-run: all $(BENCH_BINS) $(PROG_BINS)
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b || exit 1; done; \
	for s in tests/bench/bench_*.sh; do [ -f "$$s" ] || continue; echo "== $$s"; BUILD=$(BUILD) sh $$s || exit 1; done

# ---- demo -------------------------------------------------------------------
demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run: all
	@BUILD=$(BUILD) sh tests/e2e/demo.sh

# ---- housekeeping -----------------------------------------------------------
FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' '*.cu' '*.cuh' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)

install: all
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/swerve $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	for h in $(PUBLIC_HEADERS); do install -d $(DESTDIR)$(PREFIX)/include/swerve/$$(dirname $$h); \
	  install -m 644 $$h $(DESTDIR)$(PREFIX)/include/swerve/$$h; done
	install -m 755 $(SWERVE) $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/libexec/swerve
	install -m 755 $(SWERVE_CORE) $(SWERVE_EXEC) $(DESTDIR)$(PREFIX)/libexec/swerve/
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include/swerve\n\nName: swerve\nDescription: sandboxed SWE RL environment runner\nVersion: %s\nRequires.private: %s\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lswerve\nLibs.private: -lpthread -lm\n' \
	  '$(PREFIX)' "$$(sed -n 's/.*SWERVE_VERSION "\(.*\)".*/\1/p' envs/cli.h)" '$(PKGS)' \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/swerve.pc

clean:
	rm -rf $(BUILD) demo-out

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
