# Reference measurement on a CUDA machine, not part of nad: where a WRN-16-1 training step's time
# goes on the GPU in PyTorch. For batch 128 and 64, NCHW and channels-last, fp32 and bf16
# autocast: milliseconds per step launched op by op (eager) and replayed as one CUDA graph; the
# profiler's sum of GPU kernel time per eager step; and what nad's per-step augmentation costs
# (random draws on the CPU sent from pinned memory, then crop and flip on the GPU).
# Run on the GPU machine: python3 bench/pytorch_gpu_step.py [OUT.json]
import json, os, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_train_step import WRN  # noqa: E402

STEPS = 200


def ms_per_call(fn, n=STEPS):
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n * 1000


def make_step(batch, channels_last, precision):
    torch.manual_seed(0)
    model = WRN().cuda()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, foreach=True)
    x = torch.rand(batch, 3, 32, 32, device="cuda").contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        return loss

    def eager_step():
        opt.zero_grad(set_to_none=True)
        return step()

    return eager_step, step, opt


def gpu_kernel_ms(fn, n=20):
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    events = prof.key_averages()

    def device_time(e):
        for name in ("self_device_time_total", "self_cuda_time_total"):
            if hasattr(e, name):
                return getattr(e, name)
        return 0

    total_us = sum(device_time(e) for e in events)
    top = sorted(events, key=device_time, reverse=True)[:12]
    return total_us / n / 1000, [(e.key[:70], round(device_time(e) / n / 1000, 4), e.count // n)
                                 for e in top]


def augmentation(batch):
    # nad's data::augment_batch (crop with padding 4 and flip), draws from a CPU generator.
    images = torch.randint(0, 256, (50000, 32, 32, 3), dtype=torch.uint8, device="cuda")
    generator = torch.Generator().manual_seed(0)
    arange_h = torch.arange(32, device="cuda")
    rows_all = torch.arange(batch, device="cuda").view(batch, 1, 1)

    def to_device(t, pinned):
        return t.pin_memory().to("cuda", non_blocking=True) if pinned else t.to("cuda")

    def run(pinned):
        idx = torch.randint(0, 50000, (batch,), device="cuda")
        b = images.index_select(0, idx)
        padded = F.pad(b, (0, 0, 4, 4, 4, 4))
        dy = to_device(torch.randint(0, 9, (batch, 1), generator=generator), pinned)
        dx = to_device(torch.randint(0, 9, (batch, 1), generator=generator), pinned)
        out = padded[rows_all, (dy + arange_h).unsqueeze(2), (dx + arange_h).unsqueeze(1)]
        flip = to_device(torch.rand(batch, generator=generator) < 0.5, pinned).view(batch, 1, 1, 1)
        out = torch.where(flip, out.flip(2), out)
        return out.permute(0, 3, 1, 2).float().div_(255).contiguous(
            memory_format=torch.channels_last)

    return run


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else None
    result = {"torch": torch.__version__, "cuda": torch.version.cuda,
              "gpu": torch.cuda.get_device_name(0), "steps": STEPS, "runs": []}
    for batch in (128, 64):
        for channels_last in (True, False):
            for precision in ("fp32", "bf16"):
                eager_step, step, opt = make_step(batch, channels_last, precision)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(5):
                        eager_step()
                torch.cuda.current_stream().wait_stream(side)
                row = {"batch": batch, "channels_last": channels_last, "precision": precision,
                       "eager_ms": round(ms_per_call(eager_step), 3)}
                try:
                    graph = torch.cuda.CUDAGraph()
                    opt.zero_grad(set_to_none=True)
                    with torch.cuda.graph(graph):
                        step()
                    row["graph_ms"] = round(ms_per_call(graph.replay), 3)
                except Exception as e:  # noqa: BLE001
                    row["graph_error"] = str(e)[:200]
                if batch == 128 and precision == "fp32":
                    row["gpu_kernel_ms_per_eager_step"], row["top_kernels"] = gpu_kernel_ms(eager_step)
                print(json.dumps({k: v for k, v in row.items() if k != "top_kernels"}), flush=True)
                result["runs"].append(row)
    for batch in (128, 64):
        run = augmentation(batch)
        for pinned in (True, False):
            run(pinned)
            row = {"augmentation_batch": batch, "pinned_draws": pinned,
                   "ms": round(ms_per_call(lambda: run(pinned)), 3)}
            print(json.dumps(row), flush=True)
            result["runs"].append(row)
    for row in result["runs"]:
        if "top_kernels" in row:
            print("top kernels, batch 128 fp32 channels-last" if row["channels_last"]
                  else "top kernels, batch 128 fp32 NCHW")
            for k in row["top_kernels"]:
                print("  ", k)
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
