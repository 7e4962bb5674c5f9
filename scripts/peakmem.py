"""Peak resident memory of the current process, for the benchmarks' fresh child processes.

Linux keeps `getrusage(RUSAGE_SELF).ru_maxrss` across `fork` + `exec`: a child started by a parent that once held
2.6 GB reports at least 2.6 GB, whatever the child does. The kernel's per-address-space high-water mark `VmHWM`
(/proc/self/status) starts afresh at `exec`, so it is what the benchmarks read; `ru_maxrss` is the fallback where
/proc is missing (macOS: bytes there, not KiB).
"""

from __future__ import annotations

import resource
import sys


def _status_mb(field: str) -> float | None:
    """A `Vm...` field of /proc/self/status in MiB, or None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process since its `exec` (or the last `reset_peak`), in MiB."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (`VmRSS`; the peak where /proc is missing)."""
    now = _status_mb("VmRSS")
    return peak_rss_mb() if now is None else now


def reset_peak() -> bool:
    """Restart `VmHWM` from the current resident size (Linux >= 4.0: "5" to /proc/self/clear_refs), so that a later
    `peak_rss_mb()` covers only what follows, not, e.g., building the test input. False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True
