"""Peak resident memory of the current process, for the benchmarks' fresh child processes.

Linux keeps `getrusage(RUSAGE_SELF).ru_maxrss` across `fork` + `exec`: a child started by a parent that once held
2.6 GB reports at least 2.6 GB, whatever the child does. The kernel's per-address-space high-water mark `VmHWM`
(/proc/self/status) starts afresh at `exec`, so it is what the benchmarks read; `ru_maxrss` is the fallback where
/proc is missing (macOS: bytes there, not KiB).
"""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident set size of this process since its `exec`, in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
