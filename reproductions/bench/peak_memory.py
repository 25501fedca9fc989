"""Peak memory of one implementation on one configuration, measured in a fresh process.

``python -m reproductions.bench.peak_memory CONFIG IMPL [ITERATIONS]`` prints one JSON line. Method: build the
workload (imports, model, task batch) and run one untimed meta-iteration, so that one-time initialisation
(lazily loaded kernels, autograd engine) is not counted; hand the memory it freed back to the system
(``malloc_trim``), reset the kernel's resident-set high-water mark (``VmHWM``, by writing 5 to
``/proc/self/clear_refs``), note the resident set (``VmRSS``) as the baseline, run the meta-iterations and report
``VmHWM - baseline``: the most memory the meta-iterations ever held above what was there before, PyTorch's CPU
allocations included (``tracemalloc`` would not see them). Without ``clear_refs`` (not Linux) it falls back to
``getrusage`` ``ru_maxrss`` before and after, which under-reports when the warm-up peaked higher.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import re
import resource
import sys
from pathlib import Path

import torch


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else None


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _release_freed_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


def measure(config_key: str, impl: str, iterations: int = 3) -> dict:
    from reproductions.bench import workloads

    torch.set_num_threads(1)
    config = workloads.config_named(config_key)
    work = workloads.build(config)
    if workloads.unavailable(impl, config):
        raise SystemExit(f"{impl} is not available")
    workloads.meta_grad(impl, config, work)
    work.model.zero_grad(set_to_none=True)
    _release_freed_memory()
    if _reset_high_water_mark():
        method, baseline = "VmHWM - VmRSS after clear_refs", _status_kib("VmRSS")
    else:
        method, baseline = "ru_maxrss delta", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(iterations):
        workloads.meta_grad(impl, config, work)
    if method.startswith("VmHWM"):
        peak = _status_kib("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": config_key, "impl": impl, "peak_mib": (peak - baseline) / 1024, "baseline_mib": baseline / 1024,
            "method": method, "iterations": iterations}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(measure(args[0], args[1], int(args[2]) if len(args) > 2 else 3)))
