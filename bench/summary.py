"""Turn the JSON lines of a benchmark run into Markdown (the tables of ``bench/RESULTS.md``).

``python bench/summary.py bench/last-run.jsonl "bench/run"`` prints the machine, the command and one table per
scenario.
"""
from __future__ import annotations

import json
import sys

from harness import machine, versions


def cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def main(path: str, command: str) -> int:
    with open(path, encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    facts = {key.replace("load average", "load average at the end"): value for key, value in machine().items()}
    facts.update(versions("beaker-core", "Beaker", "dogpile.cache", "redis", "pymemcache", "python-memcached",
                          "cryptography"))
    print("## Machine\n")
    for key, value in facts.items():
        print(f"- {key}: {value}")
    print(f"\nCommand: `{command.strip()}`\n")
    print("## Targets\n")
    print("| scenario | target | measured | verdict |")
    print("|---|---|---|---|")
    for record in records:
        for target in record["targets"]:
            print(f"| {cell(record['title'])} | {cell(target['target'])} | {cell(target['figure'])} | "
                  f"**{target['verdict']}** |")
    print()
    current = None
    for record in records:
        if record["bench"] != current:
            current = record["bench"]
            print(f"## {current}\n")
        print(f"### {record['title']}\n")
        subject = record["contenders"][0]["us_min"]
        for contender in record["contenders"]:
            if contender["label"] == "beaker-core":
                subject = contender["us_min"]
                break
        print("| library | operation | us/op (min) | us/op (median) | time / beaker-core's |")
        print("|---|---|---:|---:|---:|")
        for contender in record["contenders"]:
            print(f"| {contender['label']} | {contender['what']} | {contender['us_min']:.3f} | "
                  f"{contender['us_median']:.3f} | {contender['us_min'] / subject:.2f}x |")
        print()
        for target in record["targets"]:
            print(f"- target: {target['target']}: {target['figure']} — **{target['verdict']}**")
        for key, value in record["extra"].items():
            print(f"- {key}: {value}")
        if record["note"]:
            print(f"- note: {record['note']}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "bench/run"))
