#!/usr/bin/env python3
"""Prints one line per run of bench/gpu_scan.sh (RUNS folder): ACC/ASR, scan verdicts, STRIP FAR."""
import json, pathlib, sys

root = pathlib.Path(sys.argv[1])
for summary in sorted(root.glob("*/*/summary.json")):
    d = json.loads(summary.read_text())
    name = f"{summary.parent.parent.name}/{summary.parent.name}"
    bits = [name, f"{d.get('seconds', 0):.1f}s"]
    for key in ("before", "after", "test"):
        if isinstance(d.get(key), dict) and "clean_acc" in d[key]:
            m = d[key]
            bits.append(f"{key} {m['clean_acc']:.2f}/{m['asr'] if m['asr'] is None else round(m['asr'], 2)}")
    if "clean_acc" in d and "asr" in d:
        bits.append(f"model {d['clean_acc']:.2f}/{round(d['asr'] or 0, 2)}")
    if "classes" in d:
        bits.append(f"verdict {d['verdict']} flagged {d['flagged']} idx {[round(c['anomaly_index'], 2) for c in d['classes']]}"
                    f" norms {[round(c['norm'], 1) for c in d['classes']]}")
    v = d.get("verify")
    if isinstance(v, dict):
        bits.append(f"verify before {v['before']['verdict']} {v['before']['flagged']} max {v['before']['max_anomaly_index']:.2f}"
                    f" (class {v['before']['most_anomalous']}), after {v['after']['verdict']} {v['after']['flagged']}"
                    f" max {v['after']['max_anomaly_index']:.2f}; rev trigger {v['reversed_trigger']['class']}:"
                    f" {v['reversed_trigger']['success_before']:.1f}% -> {v['reversed_trigger']['success_after']:.1f}%")
    if summary.parent.name == "strip":
        bits.append(" ".join(f"{k}={v:.4g}" for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)))
    print(" | ".join(bits))
