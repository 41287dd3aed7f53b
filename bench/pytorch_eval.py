# Reference measurement, not part of nad: WRN-16-1 inference (the `eval` workload's work) in
# Debian's PyTorch 1.13 on this machine, channels-last, 2 threads, at several batch sizes, in
# fp32 (channels-last and NCHW), bf16 autocast, bf16 weights, and as frozen TorchScript graphs
# (torch.jit.freeze, plus optimize_for_inference for fp32, which folds BatchNorm into the
# convolutions it follows and fuses oneDNN operators), with the operator profile of batch 64
# (--profile). Compare with `nad_bench --workload eval`.
# Run: /usr/bin/python3 bench/pytorch_eval.py [--threads N] [--images N] [--profile]
import argparse, json, time
import torch
from pytorch_train_step import WRN


def images_per_second(run, batch, images):
    x = torch.rand(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    steps = max(1, images // batch)
    for _ in range(3):
        run(x)
    start = time.perf_counter()
    for _ in range(steps):
        run(x)
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=19000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--flush-denormal", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = WRN().to(memory_format=torch.channels_last)
    # Realistic BatchNorm statistics: with the initial running statistics (mean 0, variance 1)
    # the activations of an untrained network grow through the blocks.
    with torch.no_grad():
        for _ in range(20):
            model(torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    model.eval()

    def fp32(x):
        with torch.inference_mode():
            return model(x)

    model_nchw = WRN()
    model_nchw.load_state_dict(model.state_dict())
    model_nchw.eval()

    def fp32_nchw(x):
        with torch.inference_mode():
            return model_nchw(x.contiguous())

    def bf16(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    example = torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))
        frozen(example)

    def jit_fp32(x):
        with torch.inference_mode():
            return frozen(x)

    # bf16 weights and activations throughout (no autocast), eager and frozen.
    model_bf16 = WRN()
    model_bf16.load_state_dict(model.state_dict())
    model_bf16 = model_bf16.eval().to(torch.bfloat16).to(memory_format=torch.channels_last)
    with torch.no_grad():
        frozen_bf16 = torch.jit.freeze(torch.jit.trace(model_bf16, example.to(torch.bfloat16)))
        frozen_bf16(example.to(torch.bfloat16))

    def bf16_weights(x):
        with torch.inference_mode():
            return model_bf16(x.to(torch.bfloat16))

    def jit_bf16(x):
        with torch.inference_mode():
            return frozen_bf16(x.to(torch.bfloat16))

    results = {"torch": torch.__version__, "threads": args.threads, "rows": []}
    for name, run in [("fp32", fp32), ("fp32-nchw", fp32_nchw), ("bf16-autocast", bf16), ("fp32-frozen", jit_fp32),
                      ("bf16-weights", bf16_weights), ("bf16-frozen", jit_bf16)]:
        for batch in [64, 128, 256]:
            rate = images_per_second(run, batch, args.images)
            results["rows"].append({"mode": name, "batch": batch, "images_per_s": round(rate)})
            print(f"{name:14s} batch {batch:4d}: {rate:8.0f} images/s", flush=True)
    if args.profile:
        x = example
        for name, run in [("fp32", fp32), ("fp32-nchw", fp32_nchw), ("bf16-autocast", bf16)]:
            with torch.autograd.profiler.profile() as prof:
                for _ in range(30):
                    run(x)
            print(name)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
