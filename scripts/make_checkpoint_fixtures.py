"""Makes the PyTorch checkpoints nad's reader is tested on. Run with Debian's /usr/bin/python3
(python3-torch 1.13); nothing here is needed at nad's run time.

    make_checkpoint_fixtures.py fixtures [DIR]   # the small committed files (tests/fixtures/checkpoints)
    make_checkpoint_fixtures.py resnets DIR      # PreAct-ResNet-18 / ResNet-18 files (~45 MB each,
                                                 # made by the tests at run time, never committed)
    make_checkpoint_fixtures.py roundtrip STATE_DICT ARCH NUM_CLASSES INPUTS OUT
                                                 # torch.load a file nad exported, load it strictly
                                                 # into the PyTorch original, save its outputs

Every checkpoint holds random weights and random BatchNorm statistics; `*_expected.pt` holds
a fixed input batch with the PyTorch logits and group features in eval mode.
"""
import collections
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import ResNet18, WideResNet, build  # noqa: E402

# A command the malicious fixtures would run if a loader executed them; the tests check that
# this file never appears.
PWNED = "/tmp/nad_checkpoint_fixture_pwned"


def randomise(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(7)
    model.eval()
    return model


def expected(model, seed):
    torch.manual_seed(seed + 1000)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        *features, logits = model(x)
    out = collections.OrderedDict(input=x, logits=logits)
    for i, f in enumerate(features):
        out[f"feature{i}"] = f
    return out


def save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


class Call:
    """Pickles as a call of `function(*args)`: what a malicious checkpoint does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def fake_class(module, name):
    """A class that pickles under module.name (an import nad must never do)."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    mod = sys.modules[module]
    cls = type(name, (), {"__module__": module})
    setattr(mod, name, cls)
    return cls


def dtype_fixture():
    out = collections.OrderedDict()
    base = torch.arange(24).reshape(4, 6)
    for name, dtype in [("float16", torch.float16), ("float32", torch.float32),
                        ("float64", torch.float64), ("bfloat16", torch.bfloat16),
                        ("int8", torch.int8), ("int16", torch.int16), ("int32", torch.int32),
                        ("int64", torch.int64), ("uint8", torch.uint8), ("bool", torch.bool)]:
        x = (base % 2 == 1) if dtype == torch.bool else (base - 5).to(dtype)
        if dtype == torch.uint8:
            x = base.to(dtype)
        out[name] = x
        out[name + "_t"] = x.t()            # strides (1, 6)
        out[name + "_slice"] = x[1:, 2:5]   # storage offset 8, strides (6, 1)
    shared = torch.arange(10, dtype=torch.float32)
    out["shared_a"] = shared
    out["shared_b"] = shared[3:7]           # the same storage at offset 3
    out["scalar"] = torch.tensor(3.5)
    out["empty"] = torch.zeros(0, 3)
    return out


def make_fixtures(folder):
    os.makedirs(folder, exist_ok=True)

    def path(name):
        return os.path.join(folder, name)

    wrn16 = randomise(WideResNet(16, 10, 1), 16)
    sd16 = wrn16.state_dict()
    save(sd16, path("wrn16_zip.pt"))
    save(sd16, path("wrn16_legacy.pt"), legacy=True)
    save(expected(wrn16, 16), path("wrn16_expected.pt"))

    wrn10 = randomise(WideResNet(10, 10, 1), 10)
    sd10 = wrn10.state_dict()
    save(expected(wrn10, 10), path("wrn10_expected.pt"))
    optimizer = torch.optim.SGD(wrn10.parameters(), lr=0.1, momentum=0.9)
    # The training-script wrapper: weights beside the epoch, optimizer state, best accuracy.
    save({"epoch": 12, "state_dict": sd10, "optimizer": optimizer.state_dict(),
          "best_prec": 91.3}, path("wrn10_wrapped_zip.pt"))
    # nn.DataParallel names ("module." prefixes) under "net", legacy format.
    save({"net": collections.OrderedDict(("module." + k, v) for k, v in sd10.items()),
          "acc": 90.1, "epoch": 3}, path("wrn10_module_legacy.pt"), legacy=True)
    # nn.Parameter objects (torch._utils._rebuild_parameter) under "model_state_dict".
    params = collections.OrderedDict(wrn10.named_parameters())
    params.update(wrn10.named_buffers())
    save({"model_state_dict": params, "optimizer_state_dict": optimizer.state_dict()},
         path("wrn10_params_zip.pt"))
    # BackdoorBench's attack_result.pt: the weights under "model", beside the poisoned data
    # (numpy index arrays, PIL images, its dataset class).
    from PIL import Image
    dataset_class = fake_class("utils.bd_dataset_v2", "prepro_cls_DatasetBD_v2")
    dataset = dataset_class()
    dataset.poison_indicator = np.array([0, 1, 0, 1], dtype=np.int64)
    dataset.images = [Image.new("RGB", (4, 4), (i, 0, 0)) for i in range(2)]
    save({"model_name": "wrn-10-1", "num_classes": 10, "model": sd10,
          "data_path": "./data", "img_size": (32, 32, 3), "clean_data": "cifar10",
          "bd_train": {"poison_indicator": np.array([0, 1, 1, 0]),
                       "original_index_array": np.arange(4), "dataset": dataset},
          "bd_test": {"x": [Image.new("L", (2, 2))], "scale": np.float32(0.5)}},
         path("wrn10_attack_result.pt"))
    # Half precision, legacy format: nad converts; the expected outputs use the rounded weights.
    half = collections.OrderedDict(
        (k, v.half() if v.is_floating_point() else v) for k, v in sd10.items())
    save(half, path("wrn10_half_legacy.pt"), legacy=True)
    wrn10.load_state_dict(collections.OrderedDict((k, v.to(sd10[k].dtype)) for k, v in half.items()))
    save(expected(wrn10, 10), path("wrn10_half_expected.pt"))

    dtypes = dtype_fixture()
    save(dtypes, path("dtypes_zip.pt"))
    save(dtypes, path("dtypes_legacy.pt"), legacy=True)
    # Newer pickle protocols (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL, ...).
    torch.save(dtypes, path("dtypes_p4_zip.pt"), pickle_protocol=4)
    torch.save(dtypes, path("dtypes_p5_legacy.pt"), pickle_protocol=5,
               _use_new_zipfile_serialization=False)

    # Plain pickles of everyday values in each protocol, for the pickle reader alone.
    shared = [1, 2]
    plain = {"int": 1, "neg": -300, "i32": 70000, "i64": -2 ** 40, "big": 2 ** 70,
             "float": -3.25, "str": "h\u00e9llo", "bytes": b"xyz", "list": [1, 2, (3, 4)],
             "tuple1": (1,), "set": {5}, "frozenset": frozenset([6]), "none": None,
             "true": True, "false": False, "nested": {"a": {"b": [[]]}},
             "od": collections.OrderedDict(z=1), "shared1": shared, "shared2": shared}
    for protocol in (0, 1, 2, 3, 4, 5):
        with open(path(f"plain_p{protocol}.pkl"), "wb") as f:
            pickle.dump(plain, f, protocol=protocol)

    # Malicious state_dicts: each holds a pickled call that Python's torch.load would run.
    small = collections.OrderedDict(weight=torch.ones(2, 2))
    payloads = {
        "evil_system_zip.pt": Call(os.system, f"touch {PWNED}"),
        "evil_eval_legacy.pt": Call(eval, f"open('{PWNED}', 'w')"),
        "evil_popen_zip.pt": Call(subprocess.Popen, ["touch", PWNED]),
        "evil_unknown_zip.pt": fake_class("evilpkg.payload", "Payload")(),
    }
    for name, payload in payloads.items():
        sd = collections.OrderedDict(small)
        sd["bias"] = payload
        save(sd, path(name), legacy="legacy" in name)
    # The same call beside the weights (not in them): loads, with a warning naming it.
    save({"state_dict": small, "hook": Call(os.system, f"touch {PWNED}")},
         path("evil_beside_zip.pt"))
    # A whole pickled module (torch.save(model)): never unpickled into code.
    save(torch.nn.Linear(2, 2), path("pickled_module_zip.pt"))


def make_resnets(folder):
    os.makedirs(folder, exist_ok=True)
    preact = randomise(ResNet18(10, preact=True), 18)
    save({"model_name": "preactresnet18", "num_classes": 10, "model": preact.state_dict()},
         os.path.join(folder, "preact_resnet18_zip.pt"))
    save(expected(preact, 18), os.path.join(folder, "preact_resnet18_expected.pt"))
    resnet = randomise(ResNet18(10, preact=False, head="fc"), 19)
    save({"net": collections.OrderedDict(("module." + k, v) for k, v in resnet.state_dict().items())},
         os.path.join(folder, "resnet18_fc_legacy.pt"), legacy=True)
    save(expected(resnet, 19), os.path.join(folder, "resnet18_expected.pt"))


def roundtrip(state_path, arch, num_classes, inputs_path, out_path):
    state = torch.load(state_path)
    assert isinstance(state, collections.OrderedDict), type(state)
    inputs = torch.load(inputs_path)["input"]
    model = build(arch, int(num_classes), tuple(inputs.shape[1:]))
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        *features, logits = model(inputs)
    out = collections.OrderedDict(logits=logits)
    for i, f in enumerate(features):
        out[f"feature{i}"] = f
    torch.save(out, out_path)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
    if command == "fixtures":
        here = os.path.dirname(os.path.abspath(__file__))
        make_fixtures(sys.argv[2] if len(sys.argv) > 2 else
                      os.path.join(here, "..", "tests", "fixtures", "checkpoints"))
    elif command == "resnets":
        make_resnets(sys.argv[2])
    elif command == "roundtrip":
        roundtrip(*sys.argv[2:7])
    else:
        sys.exit(__doc__)
