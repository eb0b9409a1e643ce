#!/usr/bin/python3
"""Parse Prometheus text exposition (stdin) with the reference Python
client's parser (Debian python3-prometheus-client) and print the families
as JSON, so the Rust tests check /metrics with a parser that shares no code
with pqwatch.

Output: a list of {"name", "type", "help", "samples": [{"name", "labels",
"value"}]}. Non-finite values are written as the strings "+Inf", "-Inf",
"NaN". A parse error exits 1 with the parser's message on stderr.
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def value(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def main():
    text = sys.stdin.read()
    out = []
    try:
        for fam in text_string_to_metric_families(text):
            out.append({
                "name": fam.name,
                "type": fam.type,
                "help": fam.documentation,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": value(s.value)}
                    for s in fam.samples
                ],
            })
    except Exception as e:  # the parser raises ValueError and others
        print(f"prometheus_client parser: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
