#!/usr/bin/env bash
# GPU diagnosis: per-step timing of nad's training loop (NAD_STEP_TIMING=1) with and without CUDA
# graphs, for train-epoch and a 3-epoch NAD protocol, and a dump of the captured graph
# (NAD_CUDA_GRAPH_DUMP; LibTorch 2.x). Builds nad_bench only (about 95 s on 16 cores). Needs what
# bench/gpu_prepare.sh puts in .gpu/ (with .gpu/badnets/{model,teacher}.pt). Output: $OUT.
# Run through the device tool: `OUT=$OUT bash bench/gpu_step_timing.sh` with carry [".gpu"].
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu
tar xzf .gpu/cifar10.tar.gz -C .gpu & untar=$!
T=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
cmake -S . -B b -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$T;$PWD/.gpu/deps/usr" \
  -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON -DNAD_HAVE_GLOO_HEADERS=0 -DNAD_WITH_NCCL=OFF \
  -DNAD_BUILD_TESTS=OFF >"$OUT/build.log" 2>&1
cmake --build b -j 16 --target nad_bench >>"$OUT/build.log" 2>&1 || { grep -A5 error "$OUT/build.log" | head -40; exit 1; }
echo "built at ${SECONDS}s"
wait $untar
B=(b/bench/nad_bench --device cuda --repeats 1 --data-dir .gpu/cifar10 --out "$OUT/json")
mkdir -p "$OUT/json"
run() { echo "== $* (${SECONDS}s)"; NAD_STEP_TIMING=1 "${B[@]}" "$@" 2>&1 | grep -E "step timing|median|warning" | sed -n '1,4p;$p'; }
NAD_CUDA_GRAPH_DUMP=$OUT/graph-bf16.dot run --workload train-epoch --precision bf16 --cuda-graphs 1
run --workload train-epoch --precision bf16 --cuda-graphs 0
M=(--model .gpu/badnets/model.pt --teacher .gpu/badnets/teacher.pt --protocol-epochs 3)
run --workload nad-protocol --precision bf16 --cuda-graphs 1 "${M[@]}"
run --workload nad-protocol --precision bf16 --cuda-graphs 0 "${M[@]}"
run --workload train-epoch --precision fp32 --cuda-graphs 1
python3 - "$OUT/graph-bf16.dot" <<'PY'
import collections, re, sys
try:
    text = open(sys.argv[1]).read()
except OSError as e:
    print("no dot:", e); sys.exit()
names = re.findall(r'(?:name|label)\s*=\s*"?([A-Za-z_][^"\\\n]{0,60})', text)
kinds = collections.Counter()
for n in re.findall(r'KERNEL|MEMCPY|MEMSET|EVENT_RECORD|WAIT_EVENT|HOST|EMPTY|MEM_ALLOC|MEM_FREE', text):
    kinds[n] += 1
print("node kinds:", dict(kinds))
k = collections.Counter(re.sub(r'<.*', '', x)[:50] for x in re.findall(r'name\s*=\s*"?([^"\\\n]+)', text))
print("kernels:", sum(k.values()))
for name, c in k.most_common(25): print(f"  {c:4d} {name}")
PY
echo "done at ${SECONDS}s"
