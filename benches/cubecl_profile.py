"""Where a GPU run's time goes, from burn's kernel profile (cubecl's profiling log).

Run the CLI with `CUBECL_DEBUG_LOG=prof.log CUBECL_DEBUG_OPTION=profile` (each kernel is timed on
the GPU, one line `| <duration> | <kernel name>` per launch; wall times grow, kernel times do not),
then split the launches into periods at each launch of one kernel (MARKER: a kernel that runs once
per UNet call, e.g. conv_in's) and print, per period, the launches and GPU time, and for the
periods asked for, the kernel families that took it:

    python3 benches/cubecl_profile.py prof.log --marker DirectConv2dKernel_e323d4cf --show 4 9
"""

import argparse
import collections
import re

UNITS = {"ns": 1e-6, "µs": 1e-3, "ms": 1.0, "s": 1e3}


def launches(path):
    """(milliseconds, kernel name) per timed launch, in order."""
    for line in open(path, encoding="utf-8"):
        if line.startswith("| "):
            duration, name = (p.strip() for p in line.strip().strip("|").split("|", 1))
            m = re.fullmatch(r"([\d.]+)(ns|µs|ms|s)", duration)
            if m:
                yield float(m.group(1)) * UNITS[m.group(2)], name


def family(name):
    """The kernel without its variant's hash (DirectConv2dKernel_6155aaad -> DirectConv2dKernel)."""
    return name.split(" ")[0].split("_")[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log")
    p.add_argument("--marker", required=True, help="the kernel name that starts each period")
    p.add_argument("--show", type=int, nargs="*", default=[], help="periods to break down")
    p.add_argument("--top", type=int, default=8)
    a = p.parse_args()
    periods = [[]]
    for ms, name in launches(a.log):
        if name == a.marker and periods[-1]:
            periods.append([])
        periods[-1].append((ms, name))
    for i, period in enumerate(periods):
        print(f"period {i}: {len(period)} launches, {sum(ms for ms, _ in period):.1f} ms on the GPU")
    for i in a.show:
        totals = collections.defaultdict(lambda: [0, 0.0])
        for ms, name in periods[i]:
            totals[family(name)][0] += 1
            totals[family(name)][1] += ms
        gpu = sum(t for _, t in totals.values())
        print(f"period {i}, {gpu:.1f} ms:")
        for name, (n, t) in sorted(totals.items(), key=lambda kv: -kv[1][1])[: a.top]:
            print(f"  {name:34s} {n:5d} launches {t:8.1f} ms {100 * t / gpu:5.1f}%")


if __name__ == "__main__":
    main()
