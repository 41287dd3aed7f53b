# make build | make test | make demo — each installs what is missing on Debian 12 first.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
TORCH_PREFIX ?=
CMAKE_ARGS ?=

ifneq ($(TORCH_PREFIX),)
CMAKE_ARGS += -DCMAKE_PREFIX_PATH=$(TORCH_PREFIX)
endif

.PHONY: all setup build build-nad test test-gpu demo format clean

all: build

setup:
	@scripts/setup.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

build: setup $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The demo needs only the binary, not the test suite (most of a first build's time).
build-nad: setup $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS) --target nad

test: build
	@scripts/setup.sh test
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

demo: build-nad
	$(BUILD_DIR)/nad demo --out demo-out

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD_DIR)

# The GPU tests alone (suites named *Cuda*; skipped without a CUDA device).
test-gpu: build
	$(BUILD_DIR)/tests/nad_tests --gtest_filter='*Cuda*'
