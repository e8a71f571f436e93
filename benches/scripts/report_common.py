"""Helpers shared by the benchmark report scripts: the machine line and rewriting one
marked section of BENCHMARKS.md."""

import os
import platform
import re


def machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return f"{os.cpu_count()} vCPU {cpu}, {mem_kib / 1048576:.0f} GiB RAM, Linux {platform.release()}"


def replace_section(md, name, body, heading):
    """Puts `body` between the `<!-- NAME:begin -->` / `<!-- NAME:end -->` markers of the
    file `md`, or appends it under `heading` when the markers are missing."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body}\n{end}"
    with open(md) as f:
        text = f.read()
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n{section}\n"
    with open(md, "w") as f:
        f.write(text)
