# Reference measurement, not part of nad: WRN-16-1 inference (the `eval` workload's work) in
# Debian's PyTorch 1.13 on this machine, channels-last, 2 threads, at several batch sizes, in
# fp32 (channels-last and NCHW), bf16 autocast, bf16 weights, and as frozen TorchScript graphs
# (torch.jit.freeze, plus optimize_for_inference for fp32, which folds BatchNorm into the
# convolutions it follows and fuses oneDNN operators), with the operator profile of batch 64
# (--profile). Compare with `nad_bench --workload eval`.
# Run: /usr/bin/python3 bench/pytorch_eval.py [--threads N] [--images N] [--profile]
#
# --torchvision: torchvision's resnet18 and vgg19_bn (nad's tv-resnet18 and vgg19_bn) at 32x32
# instead, fp32 channels-last: PyTorch eager and frozen TorchScript against nad on the same
# weights in the same run (`nad_bench --workload eval`: the CIFAR-10 test set, clean and
# triggered, from --data-dir; --nad-bench names the binary, --no-nad leaves it out).
#   /usr/bin/python3 bench/pytorch_eval.py --torchvision [--archs tv-resnet18,vgg19_bn]
import argparse, json, os, subprocess, sys, tempfile, time
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


def nad_eval_rate(args, arch, model, batch):
    """nad's evaluation throughput on `model`'s weights, saved as nad's model.pt."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = os.path.join(folder, "model.pt")
        torch.save({"arch": arch, "num_classes": 10, "input_shape": [3, 32, 32],
                    "state_dict": model.state_dict()}, checkpoint)
        subprocess.run([args.nad_bench, "--workload", "eval", "--model", checkpoint, "--data-dir",
                        args.data_dir, "--threads", str(args.threads), "--repeats", "1",
                        "--eval-batch-size", str(batch), "--out", folder, "--tag", arch],
                       check=True, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        [result] = [f for f in os.listdir(folder) if f.endswith(".json")]
        with open(os.path.join(folder, result)) as f:
            return json.load(f)["median_run"]["images_per_s"]


def torchvision_comparison(args):
    import torchvision

    results = {"torch": torch.__version__, "torchvision": torchvision.__version__,
               "threads": args.threads, "rows": []}
    for arch in args.archs.split(","):
        name = arch[3:] if arch.startswith("tv-") else arch
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(num_classes=10).to(memory_format=torch.channels_last)
        # Running statistics from a few batches, as for the WRN above.
        with torch.no_grad():
            for _ in range(5):
                model(torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last))
        model.eval()

        def eager(x, model=model):
            with torch.inference_mode():
                return model(x)

        example = torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            try:
                # Folds BatchNorm and fuses oneDNN operators; its oneDNN adaptive pooling refuses
                # VGG's 7x7 pool of a 1x1 map (32x32 inputs), which then stays merely frozen
                # (a fresh copy: the pass rewrites the module it is given).
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))
                frozen(example)
            except RuntimeError as error:
                print(f"{arch}: optimize_for_inference failed ({str(error).splitlines()[-1]}); "
                      "frozen only", file=sys.stderr)
                frozen = torch.jit.freeze(torch.jit.trace(model, example))
            frozen(example)

        def jit(x, frozen=frozen):
            with torch.inference_mode():
                return frozen(x)

        for batch in args.batches:
            rates = {"pytorch-eager": images_per_second(eager, batch, args.images),
                     "pytorch-frozen": images_per_second(jit, batch, args.images)}
            if not args.no_nad:
                rates["nad"] = nad_eval_rate(args, arch, model, batch)
            for mode, rate in rates.items():
                results["rows"].append({"arch": arch, "mode": mode, "batch": batch,
                                        "images_per_s": round(rate)})
                print(f"{arch:12s} {mode:15s} batch {batch:4d}: {rate:8.0f} images/s", flush=True)
    print(json.dumps(results))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=19000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--flush-denormal", action="store_true")
    parser.add_argument("--torchvision", action="store_true")
    parser.add_argument("--archs", default="tv-resnet18,vgg19_bn")
    parser.add_argument("--batches", type=lambda text: [int(b) for b in text.split(",")], default=[128])
    parser.add_argument("--nad-bench", default="build/bench/nad_bench")
    parser.add_argument("--data-dir", default="../shared/data/cifar10")
    parser.add_argument("--no-nad", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    if args.torchvision:
        torchvision_comparison(args)
        return
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
